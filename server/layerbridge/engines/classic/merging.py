"""Merging elements: to a count on request (``layers: N``), and the parts of one thing.

A designer's layer is usually one thing in one colour in one place: a paragraph of text
lines, an icon of several parts, a row of bars. So the pair merged next is the one most
alike by colour and distance (the gap between their boxes measured in the smaller one's
height), small pairs before big ones. Two elements need not be neighbours in z-order: one
of them may move next to the other when nothing in between overlaps it, which leaves the
composite unchanged.

The weights were chosen on the development set (benchmarks/results/merging.md). Whether
two elements are of one kind (text, shape) is left out of the cost: the kind is a guess,
and counting it lowered the set's mean IoU.
"""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.regions import Element, union

#: Pairs up to this far apart in z-order are candidates (further ones rarely both move).
Z_WINDOW = 12
#: Weights of a pair's cost: the gap between their boxes in the smaller one's height, their
#: colour difference (largest channel, 0..1) and their size (joint area as a share of the
#: document, square-rooted).
GAP_COST = 1.0
COLOUR_COST = 4.0
SIZE_COST = 2.0
#: A colour difference assumed for elements without one flat colour (photos, gradients).
UNKNOWN_COLOUR = 0.3
#: Without a count asked for, pairs this alike or more are parts of one thing: close and of
#: one colour (at most ~0.1 apart, one gap of their height, a few % of the document).
ALIKE_COST = 0.5


def merge_to_count(elements: list[Element], count: int, height: int, width: int
                   ) -> list[Element]:
    """Merge the most alike pairs (see the module) until ``count`` elements are left."""
    return _merge(elements, height * width, count, float("inf")) if count > 0 else []


def merge_alike(elements: list[Element], height: int, width: int,
                max_cost: float = ALIKE_COST) -> list[Element]:
    """Merge pairs while the most alike costs at most ``max_cost``: the parts of one thing
    (lines of a paragraph, bars of a chart) that came out as several elements."""
    return _merge(elements, height * width, 1, max_cost)


def _merge(elements: list[Element], area: int, count: int, max_cost: float) -> list[Element]:
    elements = list(elements)
    while len(elements) > count:
        cost, i, j, keep_at = _cheapest_pair(elements, area)
        if cost > max_cost:
            break
        a, b = elements[i], elements[j]
        merged = union(a, b)
        if not _same_colour(a, b):
            merged.color = None  # several colours: peel by mask, not by unmixing
        merged.kind = _merged_kind(a, b)
        elements[keep_at] = merged
        del elements[j if keep_at == i else i]
    return elements


def _cheapest_pair(elements: list[Element], area: int) -> tuple[float, int, int, int]:
    """(cost, i, j, where the merged element goes) of the cheapest pair that can merge."""
    n = len(elements)
    boxes = np.array([e.box for e in elements], np.int64)
    y0, y1, x0, x1 = boxes.T
    overlap = ((y0[:, None] < y1[None]) & (y0[None] < y1[:, None])
               & (x0[:, None] < x1[None]) & (x0[None] < x1[:, None]))
    np.fill_diagonal(overlap, False)
    # seen[a, k]: how many of elements 0..k-1 overlap element a.
    seen = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(overlap, 1)], 1)
    best: tuple[float, int, int, int] | None = None
    for i in range(n - 1):
        for j in range(i + 1, min(n, i + 1 + Z_WINDOW)):
            # j moves down to i when nothing between overlaps j; else i up to j.
            if seen[j, j] - seen[j, i + 1] == 0:
                keep_at = i
            elif seen[i, j] - seen[i, i + 1] == 0:
                keep_at = j
            else:
                continue
            cost = _cost(elements[i], elements[j], area)
            if best is None or cost < best[0]:
                best = (cost, i, j, keep_at)
    if best is None:  # z-neighbours can always merge
        return 0.0, n - 2, n - 1, n - 2
    return best


def _cost(a: Element, b: Element, area: int) -> float:
    dy = max(0, max(a.box[0], b.box[0]) - min(a.box[1], b.box[1]))
    dx = max(0, max(a.box[2], b.box[2]) - min(a.box[3], b.box[3]))
    height = max(1, min(a.box[1] - a.box[0], b.box[1] - b.box[0]))
    gap = float(np.hypot(dx, dy)) / height
    if a.color is None or b.color is None:
        colour = UNKNOWN_COLOUR
    else:
        colour = float(np.abs(a.color - b.color).max())
    size = ((a.area + b.area) / max(area, 1)) ** 0.5
    return GAP_COST * gap + COLOUR_COST * colour + SIZE_COST * size


def _same_colour(a: Element, b: Element) -> bool:
    return (a.color is not None and b.color is not None
            and float(np.abs(a.color - b.color).max()) <= 0.02)


def _merged_kind(a: Element, b: Element) -> str:
    if a.kind == b.kind:
        return a.kind
    return a.kind if a.area >= b.area else b.kind
