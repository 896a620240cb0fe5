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
#: Unasked, a design of several elements keeps at least this many apart (with the
#: background, three layers): its parts are what the user came to edit.
MIN_KEPT_APART = 2


def merge_to_count(elements: list[Element], count: int, height: int, width: int
                   ) -> list[Element]:
    """Merge the most alike pairs (see the module) until ``count`` elements are left."""
    return _merge(elements, height * width, count, float("inf")) if count > 0 else []


def merge_alike(elements: list[Element], height: int, width: int,
                max_cost: float = ALIKE_COST) -> list[Element]:
    """Merge pairs while the most alike costs at most ``max_cost``: the parts of one thing
    (lines of a paragraph, bars of a chart) that came out as several elements."""
    return _merge(elements, height * width, MIN_KEPT_APART, max_cost)


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
    """(cost, i, j, where the merged element goes) of the cheapest pair that can merge:
    all pairs up to Z_WINDOW apart in z at once, as arrays."""
    n = len(elements)
    boxes = np.array([e.box for e in elements], np.int64)
    colours = np.array([np.full(3, np.nan) if e.color is None else e.color[:3]
                        for e in elements], np.float64)
    areas = np.array([e.area for e in elements], np.float64)
    y0, y1, x0, x1 = boxes.T
    overlap = ((y0[:, None] < y1[None]) & (y0[None] < y1[:, None])
               & (x0[:, None] < x1[None]) & (x0[None] < x1[:, None]))
    np.fill_diagonal(overlap, False)
    # seen[a, k]: how many of elements 0..k-1 overlap element a.
    seen = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(overlap, 1)], 1)
    best = (np.inf, n - 2, n - 1, n - 2)  # z-neighbours can always merge
    for step in range(1, min(n, Z_WINDOW + 1)):
        i = np.arange(n - step)
        j = i + step
        # j moves down to i when nothing between overlaps j; else i up to j.
        j_moves = seen[j, j] - seen[j, i + 1] == 0
        i_moves = seen[i, j] - seen[i, i + 1] == 0
        cost = _costs(boxes[i], boxes[j], colours[i], colours[j], areas[i] + areas[j], area)
        cost[~(j_moves | i_moves)] = np.inf
        k = int(np.argmin(cost))
        if cost[k] < best[0]:
            best = (float(cost[k]), int(i[k]), int(j[k]), int(i[k] if j_moves[k] else j[k]))
    return best


def _costs(a: np.ndarray, b: np.ndarray, colour_a: np.ndarray, colour_b: np.ndarray,
           joint_area: np.ndarray, area: int) -> np.ndarray:
    """The cost of merging each pair of boxes (y0, y1, x0, x1) a[k] and b[k]."""
    dy = np.maximum(0, np.maximum(a[:, 0], b[:, 0]) - np.minimum(a[:, 1], b[:, 1]))
    dx = np.maximum(0, np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 3], b[:, 3]))
    height = np.maximum(1, np.minimum(a[:, 1] - a[:, 0], b[:, 1] - b[:, 0]))
    gap = np.hypot(dx, dy) / height
    colour = np.abs(colour_a - colour_b).max(1)
    colour[np.isnan(colour)] = UNKNOWN_COLOUR
    size = np.sqrt(joint_area / max(area, 1))
    return GAP_COST * gap + COLOUR_COST * colour + SIZE_COST * size


def _same_colour(a: Element, b: Element) -> bool:
    return (a.color is not None and b.color is not None
            and float(np.abs(a.color - b.color).max()) <= 0.02)


def _merged_kind(a: Element, b: Element) -> str:
    if a.kind == b.kind:
        return a.kind
    return a.kind if a.area >= b.area else b.kind
