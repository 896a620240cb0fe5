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

import cv2
import numpy as np

from layerbridge.engines.classic.regions import Element, union
from layerbridge.engines.classic.tuning import TUNING


def merge_to_count(elements: list[Element], count: int, height: int, width: int
                   ) -> list[Element]:
    """Merge the most alike pairs (see the module) until ``count`` elements are left."""
    return _merge(elements, height * width, count, float("inf")) if count > 0 else []


def merge_alike(elements: list[Element], height: int, width: int) -> list[Element]:
    """Merge pairs while the most alike costs at most TUNING.alike_cost: the parts of one
    thing (lines of a paragraph, bars of a chart) that came out as several elements."""
    return _merge(join_series(elements), height * width, TUNING.min_kept_apart,
                  TUNING.alike_cost)


def join_series(elements: list[Element]) -> list[Element]:
    """Bars of one colour and one width standing on one baseline, of several heights (the
    bars of a chart), TUNING.series_min_count or more, as one element: a bar's neighbours
    are near in place but far in size, so no pair of them is alike. An element may hold
    several of them already. The series takes the place in z-order of its lowest part."""
    tol = TUNING.series_align
    # Per series: the first bar's width, baseline and colour; its elements; its bar heights.
    groups: list[tuple[int, int, np.ndarray, list[int], list[int]]] = []
    for k, e in enumerate(elements):
        # Of any kind: short bars in a row look like glyphs, and may have been joined as text.
        if e.color is None or (bars := _bars(e)) is None:
            continue
        width, bottom, heights = bars
        for first_width, first_bottom, colour, members, seen in groups:
            if (abs(first_width - width) <= tol and abs(first_bottom - bottom) <= tol
                    and float(np.abs(colour - e.color).max()) <= TUNING.merged_same_colour):
                members.append(k)
                seen.extend(heights)
                break
        else:
            groups.append((width, bottom, e.color, [k], list(heights)))
    into: dict[int, int] = {}
    for *_, members, heights in groups:
        # Bars of data differ in height; a row of identical discs is icons, each its own.
        if len(heights) >= TUNING.series_min_count and max(heights) - min(heights) > tol:
            into.update({k: members[0] for k in members})
    out: dict[int, Element] = {}
    for k, e in enumerate(elements):
        head = into.get(k, k)
        out[head] = union(out[head], e) if head in out else e
    return list(out.values())


def _bars(e: Element) -> tuple[int, int, list[int]] | None:
    """(width, bottom, each one's height) of the bars ``e`` is made of, if its parts are
    all bars (filling TUNING.series_fill of their box) of one width standing on one
    baseline; else None."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(e.mask.astype(np.uint8),
                                                          connectivity=8)
    x, y, w, h, area = stats[1:].T
    bottom = y + h
    tol = TUNING.series_align
    if (count < 2 or (area < TUNING.series_fill * w * h).any() or np.ptp(w) > tol
            or np.ptp(bottom) > tol):
        return None
    return int(w[0]), e.box.y0 + int(bottom.max()), h.tolist()


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
    all pairs up to TUNING.z_window apart in z at once, as arrays."""
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
    for step in range(1, min(n, TUNING.z_window + 1)):
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
    ay0, ay1, ax0, ax1 = a.T
    by0, by1, bx0, bx1 = b.T
    dy = np.maximum(0, np.maximum(ay0, by0) - np.minimum(ay1, by1))
    dx = np.maximum(0, np.maximum(ax0, bx0) - np.minimum(ax1, bx1))
    height = np.maximum(1, np.minimum(ay1 - ay0, by1 - by0))
    gap = np.hypot(dx, dy) / height
    colour = np.abs(colour_a - colour_b).max(1)
    colour[np.isnan(colour)] = TUNING.unknown_colour
    size = np.sqrt(joint_area / max(area, 1))
    return TUNING.gap_cost * gap + TUNING.colour_cost * colour + TUNING.size_cost * size


def _same_colour(a: Element, b: Element) -> bool:
    return (a.color is not None and b.color is not None
            and float(np.abs(a.color - b.color).max()) <= TUNING.merged_same_colour)


def _merged_kind(a: Element, b: Element) -> str:
    if a.kind == b.kind:
        return a.kind
    return a.kind if a.area >= b.area else b.kind
