"""Amodal completion: the whole shape of an element that upper elements partly hide.

A rectangle or an ellipse cut by something laid over it continues underneath. Its visible
part says how: a rectangle whose missing part (of its box) is all covered extends, side by
side, as far as the cover runs across its full width; an ellipse is fitted to the outline
that is its own (not along the cover). A completion is kept only if everything it adds lies
under upper elements; otherwise the convex hull of the visible part is all there is.
"""

from __future__ import annotations

import cv2
import numpy as np

from layerbridge.engines.classic.regions import Element

#: Share of a side that the cover must span for the rectangle to extend past it.
_SPAN = 0.95
#: Share of an added region that must lie under the cover.
_UNDER = 0.95
_MIN_AREA = 200


def complete(e: Element, cover: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """(mask, box) of ``e`` completed under full-frame ``cover``, or None if nothing hides it."""
    if e.color is None or e.kind != "shape" or e.area < _MIN_AREA:
        return None
    h, w = cover.shape
    y0, y1, x0, x1 = e.box
    wide = cv2.dilate(cover.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    near = wide[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1]
    if not near.any():
        return None
    rect = _rectangle(e, wide)
    if rect is not None:
        return rect
    return _ellipse(e, wide)


def _rectangle(e: Element, wide: np.ndarray):
    y0, y1, x0, x1 = e.box
    missing = ~e.mask & ~wide[y0:y1, x0:x1]
    if missing.sum() > 0.05 * e.mask.size:
        return None
    h, w = wide.shape
    top, bottom, left, right = y0, y1, x0, x1
    while top > 0 and wide[top - 1, left:right].mean() >= _SPAN:
        top -= 1
    while bottom < h and wide[bottom, left:right].mean() >= _SPAN:
        bottom += 1
    while left > 0 and wide[top:bottom, left - 1].mean() >= _SPAN:
        left -= 1
    while right < w and wide[top:bottom, right].mean() >= _SPAN:
        right += 1
    if (top, bottom, left, right) == (y0, y1, x0, x1):
        return None
    box = (top, bottom, left, right)
    mask = np.ones((bottom - top, right - left), bool)
    mask[y0 - top:y1 - top, x0 - left:x1 - left] = e.mask | ~missing
    return mask, box


def _ellipse(e: Element, wide: np.ndarray):
    y0, y1, x0, x1 = e.box
    h, w = wide.shape
    m = e.mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    pts = np.concatenate(contours)[:, 0]  # (x, y) in box coordinates
    own = ~wide[pts[:, 1] + y0, pts[:, 0] + x0]
    if own.sum() < 12 or own.all():
        return None
    (cx, cy), (aw, ah), angle = cv2.fitEllipse(pts[own].astype(np.float32))
    if not (np.isfinite([cx, cy, aw, ah]).all() and 0 < aw < 4 * w and 0 < ah < 4 * h):
        return None
    full = np.zeros((h, w), np.uint8)
    cv2.ellipse(full, ((cx + x0, cy + y0), (aw, ah), angle), 1, -1)
    full = full.astype(bool)
    ys, xs = np.nonzero(full)
    if len(ys) == 0:
        return None
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    visible = e.full_mask(h, w)
    if (visible & full).sum() < 0.97 * e.area:
        return None
    added = full & ~cv2.dilate(visible.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if added.sum() < 0.02 * e.area or (added & wide).sum() < _UNDER * added.sum():
        return None
    box = (min(box[0], y0), max(box[1], y1), min(box[2], x0), max(box[3], x1))
    mask = (full | visible)[box[0]:box[1], box[2]:box[3]]
    return mask, box
