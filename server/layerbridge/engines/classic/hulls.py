"""Convex hulls of element masks, computed in the element's own box (never full frame)."""

from __future__ import annotations

import cv2
import numpy as np

from layerbridge.engines.classic.regions import Element


def hull_mask(element: Element) -> np.ndarray:
    """The filled convex hull of ``element.mask``, box-sized (cv2: fast, no scikit-image)."""
    points = cv2.findNonZero(element.mask.astype(np.uint8))
    out = np.zeros(element.mask.shape, np.uint8)
    if points is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    return out.astype(bool)


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
