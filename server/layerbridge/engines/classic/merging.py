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
UNKNOWN_COLOUR = float(os.environ.get("LB_UNKNOWN", 0.3))
USE_TONES = os.environ.get("LB_TONE", "0") == "1"


def merge_to_count(elements: list[Element], count: int, height: int, width: int
                   ) -> list[Element]:
    """Merge the most alike pairs (see the module) until ``count`` elements are left."""
    return _merge(elements, height * width, count, float("inf")) if count > 0 else []


def merge_alike(elements: list[Element], height: int, width: int,
                max_cost: float = float(os.environ.get("LB_AUTO", 0.5))) -> list[Element]:
    """Merge pairs while the most alike costs at most ``max_cost``: the parts of one thing
    (lines of a paragraph, bars of a chart) that came out as several elements."""
    return _merge(elements, height * width, 1, max_cost)


def _merge(elements: list[Element], area: int, count: int, max_cost: float) -> list[Element]:
    elements = list(elements)
    # The colour a merged group looks like (area-weighted), for choosing what joins it;
    # its ``color`` is None once it holds several, so that it is peeled by mask.
    tones = [e.color for e in elements]
    while len(elements) > count:
        cost, i, j, keep_at = _cheapest_pair(elements, tones if USE_TONES else
                                             [e.color for e in elements], area)
        if cost > max_cost:
            break
        a, b = elements[i], elements[j]
        merged = union(a, b)
        if not _same_colour(a, b):
            merged.color = None  # several colours: peel by mask, not by unmixing
        merged.kind = _merged_kind(a, b)
        tone = _mean_tone(tones[i], a.area, tones[j], b.area)
        gone = j if keep_at == i else i
        elements[keep_at], tones[keep_at] = merged, tone
        del elements[gone], tones[gone]
    return elements


def _mean_tone(a: np.ndarray | None, area_a: int, b: np.ndarray | None, area_b: int
               ) -> np.ndarray | None:
    if a is None or b is None:
        return None
    return (a * area_a + b * area_b) / max(area_a + area_b, 1)


def _cheapest_pair(elements: list[Element], tones: list[np.ndarray | None], area: int
                   ) -> tuple[float, int, int, int]:
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
            cost = _cost(elements[i], elements[j], tones[i], tones[j], area)
            if best is None or cost < best[0]:
                best = (cost, i, j, keep_at)
    if best is None:  # z-neighbours can always merge
        return 0.0, n - 2, n - 1, n - 2
    return best


def _cost(a: Element, b: Element, tone_a: np.ndarray | None, tone_b: np.ndarray | None,
          area: int) -> float:
    dy = max(0, max(a.box[0], b.box[0]) - min(a.box[1], b.box[1]))
    dx = max(0, max(a.box[2], b.box[2]) - min(a.box[3], b.box[3]))
    height = max(1, min(a.box[1] - a.box[0], b.box[1] - b.box[0]))
    gap = float(np.hypot(dx, dy)) / height
    if tone_a is None or tone_b is None:
        colour = UNKNOWN_COLOUR
    else:
        colour = float(np.abs(tone_a - tone_b).max())
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
