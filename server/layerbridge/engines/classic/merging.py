"""Fewer layers on request: merge the most alike elements until ``count`` are left.

A designer's layer is usually one kind of thing in one colour in one place: a paragraph
of text lines, an icon of several parts, a row of bars. So the pair merged next is the
one most alike by kind, colour and distance (the gap between their boxes measured in
the smaller one's height), small pairs before big ones. Two elements need not be
neighbours in z-order: one of them may move next to the other when nothing in between
overlaps it, which leaves the composite unchanged.
"""

from __future__ import annotations

import os

import numpy as np

from layerbridge.engines.classic.regions import Element, union

#: Pairs up to this far apart in z-order are candidates (further ones rarely both move).
Z_WINDOW = 12
#: Weights of a pair's cost: kind differs, colour differs (max channel, 0..1), size
#: (joint area as a share of the document, square-rooted).
KIND_COST = float(os.environ.get("LB_KIND", 1.0))
COLOUR_COST = float(os.environ.get("LB_COLOUR", 4.0))
SIZE_COST = float(os.environ.get("LB_SIZE", 2.0))
GAP_COST = float(os.environ.get("LB_GAP", 1.0))
#: A colour difference assumed for elements without one flat colour (photos, gradients).
UNKNOWN_COLOUR = 0.3


def merge_to_count(elements: list[Element], count: int, height: int, width: int
                   ) -> list[Element]:
    """Merge the most alike pairs (see the module) until ``count`` elements are left."""
    elements = list(elements)
    while len(elements) > max(count, 0) and len(elements) >= 2:
        i, j, keep_at = _cheapest_pair(elements, height * width)
        merged = union(elements[i], elements[j])
        if not _same_colour(elements[i], elements[j]):
            merged.color = None  # several colours: peel by mask, not by unmixing
        merged.kind = _merged_kind(elements[i], elements[j])
        elements[keep_at] = merged
        del elements[j if keep_at == i else i]
    return elements if count > 0 else []


def _cheapest_pair(elements: list[Element], area: int) -> tuple[int, int, int]:
    """(i, j, where the merged element goes) of the cheapest pair that can be merged."""
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
        return n - 2, n - 1, n - 2
    return best[1], best[2], best[3]


def _cost(a: Element, b: Element, area: int) -> float:
    dy = max(0, max(a.box[0], b.box[0]) - min(a.box[1], b.box[1]))
    dx = max(0, max(a.box[2], b.box[2]) - min(a.box[3], b.box[3]))
    height = max(1, min(a.box[1] - a.box[0], b.box[1] - b.box[0]))
    gap = float(np.hypot(dx, dy)) / height
    if a.color is None or b.color is None:
        colour = UNKNOWN_COLOUR
    else:
        colour = float(np.abs(a.color - b.color).max())
    kind = 0.0 if a.kind == b.kind else 1.0
    size = ((a.area + b.area) / max(area, 1)) ** 0.5
    return GAP_COST * gap + COLOUR_COST * colour + KIND_COST * kind + SIZE_COST * size


def _same_colour(a: Element, b: Element) -> bool:
    return (a.color is not None and b.color is not None
            and float(np.abs(a.color - b.color).max()) <= 0.02)


def _merged_kind(a: Element, b: Element) -> str:
    if a.kind == b.kind:
        return a.kind
    return a.kind if a.area >= b.area else b.kind
