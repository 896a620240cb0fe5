"""Grouping: same-colour pieces into the shape they belong to.

A shape cut in pieces by something on top of it, or the counter of a glyph showing the
shape behind, is still one layer: recovered from colour, size and position alone; so is a
code (a QR code's modules on its quiet zone). (Glyphs into text lines: text.py.)
"""

from __future__ import annotations

from functools import reduce

import cv2
import numpy as np
from scipy import ndimage

from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.hulls import fraction_inside, hull_mask
from layerbridge.engines.classic.regions import Element, owner_map, same_color, union
from layerbridge.engines.classic.tuning import TUNING


def absorb_pieces(elements: list[Element]) -> list[Element]:
    """Merge each element into a bigger one of the same colour whose hull holds most of it.

    Half is enough: a piece cut off a shape by text across its edge lies partly outside the
    hull of what is left of the shape.
    """
    order = sorted(elements, key=lambda e: -e.area)
    texts = [e for e in elements if e.kind == "text"]
    occupied = owner_map(elements)
    filled: dict[int, np.ndarray] = {}  # id(element) -> its mask, holes filled (asked often)
    kept: list[Element] = []
    hulls: list[np.ndarray] = []
    for e in order:
        for k, big in enumerate(kept):
            if not same_color(e, big):
                continue
            inside = (e.box.intersects(big.box)
                      and fraction_inside(e, big, hulls[k]) >= TUNING.absorb_inside)
            if inside or _sliver(e, big, texts) or _split_by_cover(e, big, occupied, elements,
                                                                   filled):
                kept[k] = union(big, e)
                if kept[k].box != big.box:
                    hulls[k] = hull_mask(kept[k])  # a piece outside the box grew it
                break
        else:
            kept.append(e)
            hulls.append(hull_mask(e))
    return kept


def _split_by_cover(piece: Element, big: Element, occupied: np.ndarray,
                    elements: list[Element], filled: dict[int, np.ndarray]) -> bool:
    """Two shape pieces of one colour that something laid across cuts apart: whatever
    lies between them, within the hull of the two, belongs to other elements, and none
    of those is the ground they both stand on (icons in a row on a panel are apart)."""
    if piece.kind != "shape" or big.kind != "shape" or piece.area > big.area:
        return False
    joined = union(big, piece)
    between = hull_mask(joined) & ~joined.mask
    if not between.any():
        return False
    owners = occupied[joined.box.slices] * ~joined.mask
    # The anti-aliased seams along the cover belong to no element: grow it by a pixel.
    others = cv2.dilate((owners > 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if (between & others).sum() < TUNING.under_cover * between.sum():
        return False
    # (Asked second: most pairs are not covered between, and the grounds cost more.)
    area = joined.area  # counted once for all the grounds
    return not any(_encloses(elements[k - 1], joined, area, filled)
                   for k in np.unique(owners[between]) if k)


def _encloses(ground: Element, e: Element, area: int, filled: dict[int, np.ndarray]) -> bool:
    """Whether ``e`` (of ``area`` pixels) lies in the holes of ``ground``'s mask (stands on
    it). ``filled`` keeps each ground's mask with its holes filled, by ``id``, for the next
    question."""
    if not ground.box.intersects(e.box):
        return False
    if id(ground) not in filled:
        filled[id(ground)] = ndimage.binary_fill_holes(ground.mask)
    ground_filled = filled[id(ground)]
    common = ground.box.intersection(e.box)
    inside = ground_filled[common.within(ground.box)]
    part = e.mask[common.within(e.box)]
    return bool((inside & part).sum() >= TUNING.ground_share * area)


def _box_share(inner: Box, outer: Box) -> float:
    """Share of box ``inner`` that lies inside box ``outer``."""
    common = inner.intersection(outer)
    return max(common.height, 0) * max(common.width, 0) / max(inner.size, 1)


def _sliver(piece: Element, big: Element, texts: list[Element]) -> bool:
    """A piece much smaller than ``big`` whose box lies within ``big``'s box, grown by a
    quarter of its size: a part of it showing between the glyphs laid over it.

    Several such parts in a row look like a line of text themselves; they are parts only
    if they lie in the box of a line of another colour, the text they show through."""
    if piece.area > TUNING.sliver * big.area:
        return False
    if piece.kind == "text" and len(piece.members) >= TUNING.sliver_line_glyphs and not any(
            not same_color(piece, t) and _box_share(piece.box, t.box) >= TUNING.sliver_line_share
            for t in texts):
        return False
    r = max(big.box.height, big.box.width) // TUNING.sliver_reach_parts
    return big.box.grow(r).contains(piece.box)


def join_codes(elements: list[Element], rgb8: np.ndarray) -> list[Element]:
    """Each QR code one element: the elements within its quiet zone (its modules, the white
    square under them), found by OpenCV's detector from the code's finder patterns and kept
    only where it decodes (a pattern that merely looks like finder squares is no code). Its
    modules would otherwise join lines of "text" over the square: a layer, and a depth
    level, that no designer makes of a code."""
    try:
        found, texts, quads, _ = cv2.QRCodeDetector().detectAndDecodeMulti(
            np.ascontiguousarray(rgb8))
    except cv2.error:  # a picture the detector cannot read holds no code it can find
        return elements
    if not found or quads is None:
        return elements
    out = list(elements)
    for text, quad in zip(texts, quads, strict=True):
        if not text:
            continue
        modules = _corners_box(quad)
        zone = modules.grow(int(round(TUNING.code_quiet * max(modules.height, modules.width))),
                            rgb8.shape[:2])
        # What reaches into the modules: a caption beside the code in its quiet zone is not.
        inside = [e for e in out if zone.contains(e.box) and e.box.intersects(modules)]
        if not inside:
            continue
        joined = reduce(union, inside)
        ink = joined.color if all(same_color(e, inside[0]) for e in inside) else None
        taken = {id(e) for e in inside}
        out = [e for e in out if id(e) not in taken]
        out.append(Element(joined.box, joined.mask, ink, "code", joined.members))
    return out


def _corners_box(quad: np.ndarray) -> Box:
    """The box of a code's corners (x, y per row)."""
    xs, ys = quad[:, 0], quad[:, 1]
    return Box(int(np.floor(ys.min())), int(np.ceil(ys.max())) + 1,
               int(np.floor(xs.min())), int(np.ceil(xs.max())) + 1)
