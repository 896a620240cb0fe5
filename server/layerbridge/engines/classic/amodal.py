"""Amodal completion: the whole shape of an element that upper elements partly hide.

A rectangle, a regular polygon or an ellipse cut by something laid over it continues
underneath. Its visible part says how: a rectangle whose missing part (of its box) is all
covered extends, side by side, as far as the cover runs across its full width; a regular
polygon (the polygon tools of design software draw regular ones) follows from three of its
visible straight sides, whose directions give the number of sides and whose positions give
its centre and size; an ellipse is fitted to the outline that is its own (not along the
cover). A completion is kept only if everything it adds lies
under upper elements; otherwise the convex hull of the visible part is all there is.
"""

from __future__ import annotations

import cv2
import numpy as np

from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.regions import Element
from layerbridge.engines.classic.tuning import TUNING


def complete(e: Element, cover: np.ndarray) -> tuple[np.ndarray, Box] | None:
    """(mask, box) of ``e`` completed under full-frame ``cover``, or None if nothing hides it."""
    wide = _cover_near(e, cover)
    if wide is None:
        return None
    for shape in (_rectangle, _regular_polygon, _ellipse):
        whole = shape(e, wide)
        if whole is not None:
            return whole
    return None


def _cover_near(e: Element, cover: np.ndarray) -> np.ndarray | None:
    """The cover grown by two pixels (it hides the element's anti-aliased rim too), or
    None if ``e`` is no flat shape or the cover is nowhere near it."""
    if e.color is None or e.kind != "shape" or e.area < TUNING.completion_min_area:
        return None
    wide = cv2.dilate(cover.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if not wide[e.box.grow(1, wide.shape).slices].any():
        return None
    return wide


def hidden_under(e: Element, cover: np.ndarray, others: np.ndarray) -> tuple[str, int] | None:
    """How many pixels of ``e``'s whole shape lie under ``cover``, and what says so: "box"
    for a rectangle (whose box is filled, whichever of two overlapping ones is on top) or
    "outline" for a polygon or an ellipse fitted to its own outline (about 0 when that
    outline is whole: nothing of it is hidden). None when its shape is none of these.
    ``others`` (full frame, holding ``cover``) is all that may hide parts of ``e``."""
    wide = _cover_near(e, others)
    if wide is None:
        return None
    rect = _rectangle(e, wide)
    if rect is not None:
        return "box", _under(rect, cover)
    for full in (_polygon_fit(e, wide), _ellipse_fit(e, wide, strict=True)):
        if full is None:
            continue
        visible = e.full_mask(*cover.shape)
        if (visible & full).sum() < TUNING.completion_holds * e.area:
            continue
        grown = cv2.dilate(visible.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        return "outline", int((full & ~grown & cover).sum())
    return None


def _under(whole: tuple[np.ndarray, Box], cover: np.ndarray) -> int:
    mask, box = whole
    return int((mask & cover[box.slices]).sum())


def _rectangle(e: Element, wide: np.ndarray):
    y0, y1, x0, x1 = e.box
    missing = ~e.mask & ~wide[y0:y1, x0:x1]
    if missing.sum() > TUNING.rectangle_missing * e.mask.size:
        return None
    h, w = wide.shape
    top, bottom, left, right = y0, y1, x0, x1
    while top > 0 and _covers(wide[top - 1], left, right):
        top -= 1
    while bottom < h and _covers(wide[bottom], left, right):
        bottom += 1
    while left > 0 and _covers(wide[:, left - 1], top, bottom):
        left -= 1
    while right < w and _covers(wide[:, right], top, bottom):
        right += 1
    if (top, bottom, left, right) == (y0, y1, x0, x1) and not (missing ^ ~e.mask).any():
        return None
    box = Box(top, bottom, left, right)
    mask = np.ones((box.height, box.width), bool)
    mask[e.box.within(box)] = e.mask | ~missing
    return mask, box


def _covers(line: np.ndarray, start: int, stop: int) -> bool:
    """Whether the cover runs across ``line[start:stop]`` (one row or column past a side of
    a rectangle) and on past at least one of its ends: a cover that stops where the
    rectangle's side stops is a tile laid beside it (the next stripe of a flag, the next
    row of a table), not something lying on it."""
    if line[start:stop].mean() < TUNING.rectangle_span:
        return False
    reach = TUNING.cover_past_side
    before = start - reach >= 0 and line[start - reach]
    after = stop - 1 + reach < len(line) and line[stop - 1 + reach]
    return bool(before or after)


def _regular_polygon(e: Element, wide: np.ndarray):
    """A regular polygon through the visible straight sides of ``e``, or None."""
    full = _polygon_fit(e, wide)
    return None if full is None else _accept(e, full, wide)


def _polygon_fit(e: Element, wide: np.ndarray) -> np.ndarray | None:
    """The full-frame regular polygon that ``e``'s own straight sides lie on, or None."""
    y0, y1, x0, x1 = e.box
    contour, own = _own_outline(e, wide)
    if contour is None:
        return None
    ys, xs = np.nonzero(e.mask)
    inside = np.array([xs.mean(), ys.mean()])
    sides = _straight_sides(contour, own, inside)
    if len(sides) < 3:
        return None
    polygon = _fit_regular(sides)
    if polygon is None:
        return None
    # Every visible outline pixel that is its own must lie on the polygon's outline: a
    # circle also has short straight-looking arcs, but no polygon runs along all of it.
    if np.quantile(_outline_distance(contour[own], polygon), 0.9) > TUNING.on_outline:
        return None
    h, w = wide.shape
    full = np.zeros((h, w), np.uint8)
    cv2.fillPoly(full, [np.rint(polygon + (x0, y0)).astype(np.int32)], 1)
    return full.astype(bool)


def _outline_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance of each point (x, y) to the nearest side of the closed ``polygon``."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    ab = b - a
    rel = points[:, None, :].astype(np.float64) - a[None]
    t = np.clip((rel * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(rel - t[..., None] * ab, axis=-1).min(axis=1)


def _own_outline(e: Element, wide: np.ndarray):
    """The outer outline of ``e`` (x, y in box coordinates) and which points are its own
    (not along the cover); (None, None) if too little or all of it is its own."""
    y0, _, x0, _ = e.box
    contours, _ = cv2.findContours(e.mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None, None
    contour = max(contours, key=len)[:, 0]
    own = ~wide[contour[:, 1] + y0, contour[:, 0] + x0]
    if own.sum() < TUNING.outline_min_own or own.all():
        return None, None
    return contour, own


def _straight_sides(contour: np.ndarray, own: np.ndarray, inside: np.ndarray):
    """(outward normal angle, offset) of each long straight run of own outline points."""
    corners = cv2.approxPolyDP(contour.reshape(-1, 1, 2), TUNING.straight, True)[:, 0]
    index = {(int(x), int(y)): i for i, (x, y) in enumerate(contour)}
    at = sorted(index[(int(x), int(y))] for x, y in corners)
    sides = []
    for a, b in zip(at, at[1:] + [at[0] + len(contour)], strict=True):
        run = np.arange(a, b + 1) % len(contour)
        # Leave out the ends: the corner pixels bend towards the next side.
        run = run[2:-2]
        if len(run) < TUNING.min_side or own[run].mean() < TUNING.side_own_share:
            continue
        pts = contour[run[own[run]]].astype(np.float32)
        vx, vy, px, py = cv2.fitLine(pts, cv2.DIST_L2, 0, 0.01, 0.01).ravel()
        normal = np.array([vy, -vx])
        if normal @ (np.array([px, py]) - inside) < 0:
            normal = -normal
        sides.append((float(np.arctan2(normal[1], normal[0])), float(normal @ (px, py))))
    return sides


def _fit_regular(sides: list[tuple[float, float]]) -> np.ndarray | None:
    """Vertices (x, y) of the regular polygon with these sides among its own, or None.

    Side normals of a regular n-gon are 360/n degrees apart, and every side lies at the
    same distance (the inradius) from the centre: ``n_i . c + r = d_i``.
    """
    angles = np.array([a for a, _ in sides])
    offsets = np.array([d for _, d in sides])
    for n in range(3, TUNING.max_sides + 1):
        step = 2 * np.pi / n
        turns = np.rint((angles - angles[0]) / step)
        error = angles - angles[0] - turns * step
        error = (error + np.pi) % (2 * np.pi) - np.pi
        if np.abs(error).max() > np.radians(TUNING.angle_tol):
            continue
        base = angles[0] + np.angle(np.exp(1j * error).mean())
        normals = np.stack([np.cos(base + turns * step), np.sin(base + turns * step)], 1)
        system = np.column_stack([normals, np.ones(len(sides))])
        if np.linalg.matrix_rank(system, tol=1e-3) < 3:
            return None
        solution = np.linalg.lstsq(system, offsets, rcond=None)[0]
        centre, inradius = solution[:2], solution[2]
        if inradius <= 0 or np.abs(system @ solution - offsets).max() > TUNING.on_outline:
            return None
        corner = base + step * (np.arange(n) + 0.5)
        radius = inradius / np.cos(step / 2)
        return centre + radius * np.stack([np.cos(corner), np.sin(corner)], 1)
    return None


def _accept(e: Element, full: np.ndarray, wide: np.ndarray):
    """(mask, box) of the completion ``full`` (full frame) if it holds the visible part and
    adds only pixels under the cover, else None."""
    h, w = wide.shape
    y0, y1, x0, x1 = e.box
    ys, xs = np.nonzero(full)
    if len(ys) == 0:
        return None
    visible = e.full_mask(h, w)
    if (visible & full).sum() < TUNING.completion_holds * e.area:
        return None
    added = full & ~cv2.dilate(visible.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if (added.sum() <= TUNING.min_added * e.area
            or (added & wide).sum() < TUNING.completion_under * added.sum()):
        return None
    box = e.box.union((int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1))
    mask = (full | visible)[box.slices]
    return mask, box


def _ellipse(e: Element, wide: np.ndarray):
    full = _ellipse_fit(e, wide)
    return None if full is None else _accept(e, full, wide)


def _ellipse_fit(e: Element, wide: np.ndarray, strict: bool = False) -> np.ndarray | None:
    """The full-frame ellipse fitted to ``e``'s own outline, or None; ``strict`` also
    asks that outline to lie on it (a rectangle's outline fits an ellipse badly)."""
    y0, y1, x0, x1 = e.box
    h, w = wide.shape
    contour, own = _own_outline(e, wide)
    if contour is None:
        return None
    (cx, cy), (aw, ah), angle = cv2.fitEllipse(contour[own].astype(np.float32))
    if not (np.isfinite([cx, cy, aw, ah]).all() and 0 < aw < 4 * w and 0 < ah < 4 * h):
        return None
    if strict:
        t = np.radians(angle)
        d = contour[own] - (cx, cy)
        u = d[:, 0] * np.cos(t) + d[:, 1] * np.sin(t)
        v = -d[:, 0] * np.sin(t) + d[:, 1] * np.cos(t)
        r = np.sqrt((2 * u / aw) ** 2 + (2 * v / ah) ** 2)
        if np.quantile(np.abs(r - 1) * min(aw, ah) / 2, 0.9) > TUNING.on_outline:
            return None
    full = np.zeros((h, w), np.uint8)
    cv2.ellipse(full, ((cx + x0, cy + y0), (aw, ah), angle), 1, -1)
    return full.astype(bool)
