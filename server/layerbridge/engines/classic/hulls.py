"""Convex hulls of element masks, computed in the element's own box (never full frame)."""

from __future__ import annotations

import cv2
import numpy as np

from layerbridge.engines.classic.regions import Element, rewindow


def hull_mask(element: Element) -> np.ndarray:
    """The filled convex hull of ``element.mask``, box-sized (cv2: fast, no scikit-image)."""
    return convex_hull(element.mask)


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of the bool ``mask``, as a bool array of its shape."""
    out = np.zeros(mask.shape, np.uint8)
    points = _row_ends(mask)
    if len(points):
        cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    return out.astype(bool)


def _row_ends(mask: np.ndarray) -> np.ndarray:
    """The first and last set pixel of each row, as (n, 1, 2) int32 x, y points: they hold
    every corner of the hull, at two points a row instead of every pixel of the mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    points = np.empty((2 * rows.size, 1, 2), np.int32)
    if rows.size:
        inside = mask[rows]
        points[0::2, 0, 0] = inside.argmax(axis=1)
        points[1::2, 0, 0] = mask.shape[1] - 1 - inside[:, ::-1].argmax(axis=1)
        points[0::2, 0, 1] = points[1::2, 0, 1] = rows
    return points


def boxes_meet(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def fraction_inside(inner: Element, outer: Element, outer_hull: np.ndarray) -> float:
    """Share of ``inner``'s pixels that lie inside ``outer``'s hull (box crops only)."""
    y0, y1 = max(inner.box[0], outer.box[0]), min(inner.box[1], outer.box[1])
    x0, x1 = max(inner.box[2], outer.box[2]), min(inner.box[3], outer.box[3])
    if y0 >= y1 or x0 >= x1:
        return 0.0
    iy, ix = inner.box[0], inner.box[2]
    oy, ox = outer.box[0], outer.box[2]
    part = inner.mask[y0 - iy : y1 - iy, x0 - ix : x1 - ix]
    hull = outer_hull[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return float((part & hull).sum()) / max(inner.area, 1)


def grow(box: tuple[int, int, int, int], r: int) -> tuple[int, int, int, int]:
    return box[0] - r, box[1] + r, box[2] - r, box[3] + r


def contact_depths(a: Element, b: Element, hull_a: np.ndarray, hull_b: np.ndarray,
                   reach: int = 2) -> tuple[float, float] | None:
    """How deep inside its own hull each element's outline runs where the two touch.

    Where an upper shape bites into a lower one, the lower one's outline follows the bite
    and lies inside its own convex hull, while the upper one's outline there is its own,
    convex and on its hull. Returns (mean depth of a's contact pixels, of b's), or None
    when they do not touch.
    """
    contact = _contact(a, b, reach)
    if contact is None:
        return None
    win, ca, cb = contact
    return _depth(hull_a, a.box, win, ca), _depth(hull_b, b.box, win, cb)


def _contact(a: Element, b: Element, reach: int):
    """Where a and b touch (within ``reach`` px): the shared window and, in it, each one's
    pixels next to the other; None when fewer than 3 pixels touch on either side."""
    ga, gb = grow(a.box, reach), grow(b.box, reach)
    y0, y1, x0, x1 = max(ga[0], gb[0]), min(ga[1], gb[1]), max(ga[2], gb[2]), min(ga[3], gb[3])
    if y0 >= y1 or x0 >= x1:
        return None
    win = (y0, y1, x0, x1)
    ma, mb = rewindow(a.mask, a.box, win), rewindow(b.mask, b.box, win)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    ca = ma & cv2.dilate(mb.astype(np.uint8), kernel).astype(bool)
    cb = mb & cv2.dilate(ma.astype(np.uint8), kernel).astype(bool)
    if ca.sum() < 3 or cb.sum() < 3:
        return None
    return win, ca, cb


def contact_spans(a: Element, b: Element, reach: int = 2) -> tuple[float, float] | None:
    """Share of each element's extent, along the line where they touch, that the contact spans.

    A straight edge laid across a lower shape cuts it from side to side (share ~1), while
    the upper shape's own edge runs on past the contact at both ends (share < 1).
    """
    contact = _contact(a, b, reach)
    if contact is None:
        return None
    (y0, _, x0, _), touching_a, touching_b = contact
    ca, cb = np.argwhere(touching_a), np.argwhere(touching_b)
    both = np.concatenate([ca, cb]).astype(np.float64)
    both -= both.mean(0)
    direction = np.linalg.svd(both, full_matrices=False)[2][0]
    out = []
    for e, c in ((a, ca), (b, cb)):
        pts = np.argwhere(e.mask) + (e.box[0], e.box[2])
        whole = np.ptp(pts @ direction)
        part = np.ptp((c + (y0, x0)) @ direction)
        out.append(float(part / max(whole, 1.0)))
    return out[0], out[1]


def _depth(hull: np.ndarray, box, win, contact: np.ndarray) -> float:
    padded = np.pad(hull.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return float(rewindow(dist, box, win)[contact].mean())
