"""Faint strokes: thin text or line art drawn on a flat shape, found where no component is.

Small text one pixel wide is never covered fully by its own colour: each stroke pixel is a
part-opaque mix of the ink and the shape under it, so the strokes break into tiny pieces
of many shades that look like anti-aliasing and are dropped. What gives them away is where
they lie: in holes of a flat shape, away from every other element, and all their shades on
one line from the shape's colour to a single ink colour. Those holes become an element of
that ink whose alpha comes from unmixing alone. The same holds for the hairline parts of a
light typeface on the background, which join the text beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from layerbridge.engines.classic.background import Background
from layerbridge.engines.classic.grouping import SAME_COLOR
from layerbridge.engines.classic.hulls import boxes_meet, grow
from layerbridge.engines.classic.regions import MIN_AREA, Element, union

#: A hole pixel at least this far (max channel) from its shape's colour carries ink.
INK_STEP = 0.08
#: Ink and shape colours closer than this are noise in the shape, not strokes.
MIN_INK_CONTRAST = 0.2
#: How far (max channel) a shade may miss the line from shape colour to ink.
ON_LINE = 0.05
#: Pixels this close to another element or the background are its anti-aliasing.
_CLEARANCE = 5
#: Ink pixels this close together are one cluster (one glyph or word).
_JOIN = 3
#: Cosine above which two pieces' shades run in one direction: one ink.
_SAME_INK = 0.98
#: Coverage from which a stroke pixel belongs to the stroke's mask.
_CORE = 0.4
#: Largest share of the image one cluster of glyph remnants may cover.
_MAX_REMNANT = 0.05


def faint_strokes(elements: list[Element], rgb: np.ndarray, background: np.ndarray
                  ) -> list[Element]:
    """Stroke elements found in the holes of the flat shapes among ``elements``.

    ``background`` is the full-frame mask of pixels the background field explains.
    """
    claimed = _paint(elements, background.copy())
    out = []
    for host in elements:
        if host.color is None or host.kind != "shape" or host.area < 50 * MIN_AREA:
            continue
        out += _strokes_in(host, rgb, claimed)
    return out


def glyph_remnants(elements: list[Element], rgb: np.ndarray, background: np.ndarray,
                   field: Background, check: Callable[[], None] = lambda: None
                   ) -> list[Element]:
    """Elements grown by the thin parts of their glyphs that lie on the background.

    A light typeface has strokes so thin that whole glyphs are only anti-aliasing, left in
    the background; a cluster of them right next to a flat element, all of their shades
    mixes of the background and that element's colour, is a part of that element.
    """
    claimed = _paint(elements, np.zeros(background.shape, bool))
    kernel = np.ones((_CLEARANCE, _CLEARANCE), np.uint8)
    free = ~cv2.dilate(claimed.astype(np.uint8), kernel).astype(bool) & ~_drop_specks(background)
    if not free.any():
        return elements
    ys, xs = np.nonzero(free)
    far = np.zeros(background.shape, bool)
    far[ys, xs] = np.abs(rgb[ys, xs] - field.render(ys, xs)).max(-1) > INK_STEP
    out = list(elements)
    for window, piece in _clusters(far):
        if piece.sum() > _MAX_REMNANT * far.size:
            continue  # a textured area (a photo), not the thin parts of a few glyphs
        check()
        box = _box_of(window, (0, 0))
        under = field.render_box(*box)
        k = _nearest_same_ink(out, box, rgb[window][piece], under[piece])
        if k is not None:
            color = out[k].color
            offset = color - under[piece].mean(0)
            core = _core(rgb[window], under, offset, piece)
            if core is not None:
                out[k] = union(out[k], Element(box, core, color, "text"))
    return out


def _paint(elements: list[Element], canvas: np.ndarray) -> np.ndarray:
    """``canvas`` (full frame) with every element's mask set on it."""
    for e in elements:
        y0, y1, x0, x1 = e.box
        canvas[y0:y1, x0:x1] |= e.mask
    return canvas


def _nearest_same_ink(elements: list[Element], box, shades: np.ndarray, under: np.ndarray
                      ) -> int | None:
    """The nearest flat element within a glyph's height of ``box`` whose colour, laid at
    part opacity over ``under``, gives ``shades``; None if there is none."""
    reach = box[1] - box[0]
    best, best_gap = None, np.inf
    for k, e in enumerate(elements):
        gap = _gap(e.box, box)
        if e.color is None or gap > min(reach, e.box[1] - e.box[0]) or gap >= best_gap:
            continue
        d = e.color - under
        norm = (d * d).sum(-1)
        if np.any(norm < MIN_INK_CONTRAST**2):
            continue
        t = np.clip(((shades - under) * d).sum(-1) / norm, 0.0, 1.0)
        miss = np.abs(shades - under - t[:, None] * d).max(-1)
        if np.quantile(miss, 0.9) <= ON_LINE:
            best, best_gap = k, gap
    return best


def attach(strokes: list[Element], elements: list[Element]) -> list[Element]:
    """``elements`` with each stroke element joined to the nearest element of its ink, or
    added as one of its own: thin parts of a text whose thicker glyphs were found already
    (the dot of an i, a thin serif) are that text, not a second layer over it."""
    out = list(elements)
    for stroke in strokes:
        reach = stroke.box[1] - stroke.box[0]
        gaps = [_gap(e.box, stroke.box) if _same_ink(e, stroke) else np.inf for e in elements]
        k = int(np.argmin(gaps)) if gaps else 0
        if gaps and gaps[k] <= reach:
            out[k] = union(out[k], stroke)
        else:
            out.append(stroke)
    return out


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Pixels between two boxes (0 where they meet)."""
    dy = max(a[0] - b[1], b[0] - a[1], 0)
    dx = max(a[2] - b[3], b[2] - a[3], 0)
    return float(max(dy, dx))


def _same_ink(a: Element, b: Element) -> bool:
    return (a.color is not None and b.color is not None
            and float(np.abs(a.color - b.color).max()) <= SAME_COLOR)


def _strokes_in(host: Element, rgb: np.ndarray, claimed: np.ndarray) -> list[Element]:
    """Stroke elements in the holes of ``host`` that nothing in ``claimed`` explains."""
    y0, y1, x0, x1 = host.box
    holes = ndimage.binary_fill_holes(host.mask) & ~host.mask
    if holes.sum() < MIN_AREA:
        return []
    # Whatever else is claimed in the box (other elements, background seen through the
    # shape) keeps a margin: its anti-aliased rim is a mix too, but of its own colour.
    others = _drop_specks(claimed[y0:y1, x0:x1] & ~host.mask)
    kernel = np.ones((_CLEARANCE, _CLEARANCE), np.uint8)
    near_others = cv2.dilate(others.astype(np.uint8), kernel).astype(bool)
    crop = rgb[y0:y1, x0:x1]
    ink = holes & ~near_others & (np.abs(crop - host.color).max(-1) > INK_STEP)
    if ink.sum() < MIN_AREA:
        return []
    pieces = []
    for window, piece in _clusters(ink):
        shades = crop[window]
        offset = _ink_offset(shades[piece], host.color)
        if offset is not None:
            core = _core(shades, host.color, offset, piece)
            if core is not None:
                pieces.append((_box_of(window, (y0, x0)), core, offset))
    return [reduce(union, group) for group in _by_ink(pieces, host.color)]


def _clusters(ink: np.ndarray):
    """(window, mask in the window) per cluster of ink pixels near one another."""
    joined = cv2.dilate(ink.astype(np.uint8), np.ones((_JOIN, _JOIN), np.uint8))
    labels, _ = ndimage.label(joined, structure=np.ones((3, 3)))
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        yield window, ink[window] & (labels[window] == index)


def _box_of(window: tuple[slice, slice], origin: tuple[int, int]) -> tuple[int, int, int, int]:
    return (origin[0] + window[0].start, origin[0] + window[0].stop,
            origin[1] + window[1].start, origin[1] + window[1].stop)


def _core(shades: np.ndarray, under: np.ndarray, offset: np.ndarray, piece: np.ndarray
          ) -> np.ndarray | None:
    """The pixels of ``piece`` covered by the ink (``under + offset``) to at least _CORE.

    The faintest fringe is left out of the mask: the peel unmixes a band around the mask,
    which gives the fringe its own small alpha, while pixels in the mask of an element
    joined to a solid one are taken as opaque."""
    t = ((shades - under) * offset).sum(-1) / float(offset @ offset)
    core = piece & (t >= _CORE)
    return core if core.sum() >= 3 else None


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its pieces smaller than an element: a stroke pixel that happens to
    match the background's colour is no background seen through the shape."""
    labels, count = ndimage.label(mask)
    big = np.bincount(labels.ravel(), minlength=count + 1) >= MIN_AREA
    big[0] = False
    return big[labels]


def _by_ink(pieces, under: np.ndarray) -> list[list[Element]]:
    """Pieces grouped by ink: one text in one colour has its shades on one line, reaching
    furthest in the glyphs that are covered fully, so the strongest piece names the ink.
    Within a group, pieces whose boxes meet are one (a dot, an accent, a broken stroke)."""
    groups: list[tuple[np.ndarray, list]] = []
    for box, piece, offset in sorted(pieces, key=lambda p: -np.linalg.norm(p[2])):
        unit = offset / np.linalg.norm(offset)
        for strongest, members in groups:
            if unit @ strongest / np.linalg.norm(strongest) >= _SAME_INK:
                members.append((box, piece))
                break
        else:
            groups.append((offset, [(box, piece)]))
    out = []
    for strongest, members in groups:
        ink = np.clip(under + strongest, 0.0, 1.0)
        elements = [Element(box, piece, ink, "text", [], unmixed=True) for box, piece in members]
        out += _touching(elements)
    return out


def _touching(elements: list[Element]) -> list[list[Element]]:
    """Elements joined where their boxes, grown by a pixel, overlap."""
    n = len(elements)
    near = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(i + 1, n):
            near[i, j] = boxes_meet(grow(elements[i].box, 1), elements[j].box)
    count, label = connected_components(coo_matrix(near), directed=False)
    return [[e for e, g in zip(elements, label, strict=True) if g == k] for k in range(count)]


def _ink_offset(shades: np.ndarray, under: np.ndarray) -> np.ndarray | None:
    """How far the strongest shades lie from ``under`` (ink minus shape colour, when the ink
    covers some pixels fully), if every shade is that ink laid at part opacity over
    ``under``; None when the shades are too few, too faint, or not on one line."""
    if len(shades) < MIN_AREA:
        return None
    offset = shades - under
    strength = np.linalg.norm(offset, axis=1)
    strongest = offset[strength >= np.quantile(strength, 0.9)].mean(0)
    if np.abs(strongest).max() < MIN_INK_CONTRAST:
        return None
    t = np.clip(offset @ strongest / float(strongest @ strongest), 0.0, 1.0)
    miss = np.abs(offset - t[:, None] * strongest).max(-1)
    if np.quantile(miss, 0.9) > ON_LINE:
        return None
    return strongest
