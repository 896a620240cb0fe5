"""Grouping: glyphs into text lines, and same-colour pieces into the shape they belong to.

A design's text layer is a line of glyphs, each a separate component; a shape cut in pieces
by something on top of it, or the counter of a glyph showing the shape behind, is still one
layer. Both are recovered from colour, size and position alone.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from layerbridge.engines.classic.hulls import boxes_meet, fraction_inside, grow, hull_mask
from layerbridge.engines.classic.regions import Element, union

#: Colours closer than this (max channel, [0, 1]) are "the same colour".
SAME_COLOR = 0.08
#: Glyphs this many glyph heights apart still belong to one line (word spaces included).
WORD_GAP = 1.6
#: Glyphs are at most this share of the image's height, and at most MAX_GLYPH pixels.
#: (0.2 and 160, for the large titles of banners, lowered the development set's mean: more
#: shapes of one colour in a row were taken for text than titles were found.)
GLYPH_SHARE = 0.08
MAX_GLYPH = 64
#: Share of the space between two pieces that other elements must cover to join them.
_UNDER_COVER = 0.9
#: Share of its convex hull that a blob's filled outline covers to be solid (not a glyph).
SOLID = 0.9
#: A same-coloured piece this small next to a big element is a part of it seen through a gap
#: (a glyph counter, a sliver between glyphs), even outside its hull.
SLIVER = 0.03
#: A piece up to this share of a mean glyph of a text element, within its box, is a part of it.
SPECK_GLYPHS = 0.5


def _same_color(a: Element, b: Element) -> bool:
    if a.color is None or b.color is None:
        return False
    return float(np.abs(a.color - b.color).max()) <= SAME_COLOR


def text_lines(elements: list[Element], height: int) -> list[Element]:
    """Join small flat components of one colour that sit side by side on a line."""
    max_h = max(12, min(MAX_GLYPH, int(GLYPH_SHARE * height)))
    small = [i for i, e in enumerate(elements) if e.color is not None and _glyph_like(e, max_h)]
    if len(small) < 2:
        return elements
    box = np.array([elements[i].box for i in small], np.float64)
    col = np.array([elements[i].color for i in small])
    h = box[:, 1] - box[:, 0]
    overlap_y = np.minimum(box[:, None, 1], box[None, :, 1]) - np.maximum(box[:, None, 0],
                                                                          box[None, :, 0])
    gap_x = np.maximum(box[:, None, 2], box[None, :, 2]) - np.minimum(box[:, None, 3],
                                                                      box[None, :, 3])
    hmax = np.maximum(h[:, None], h[None, :])
    near = (overlap_y >= 0.4 * np.minimum(h[:, None], h[None, :])) & (gap_x <= WORD_GAP * hmax)
    near &= np.abs(col[:, None] - col[None, :]).max(-1) <= SAME_COLOR
    near &= (h[:, None] <= 2.5 * h[None, :]) & (h[None, :] <= 2.5 * h[:, None])
    n, lab = connected_components(coo_matrix(near), directed=False)
    # A row of solid blobs (icons on discs, bullets) is no text: each keeps its own layer.
    solid = np.array([_solid(elements[i]) for i in small])
    icons = np.bincount(lab, ~solid, minlength=n) == 0
    merged: dict[int, Element] = {}
    out = [e for i, e in enumerate(elements) if i not in set(small)]
    for k, i in enumerate(small):
        if icons[lab[k]]:
            out.append(elements[i])
        else:
            merged[lab[k]] = union(merged[lab[k]], elements[i]) if lab[k] in merged else elements[i]
    sizes = np.bincount(lab, minlength=n)
    for g, e in merged.items():
        if sizes[g] >= 2:
            e = Element(e.box, e.mask, e.color, "text", e.members, e.unmixed)
        out.append(e)
    return out


def _solid(e: Element) -> bool:
    """Whether ``e`` is a disc or a square: about as wide as high, not small, and its
    outline, holes filled, convex; unlike the glyphs of a word or the stems of a letter cut
    apart (a word of only o's is rare)."""
    h, w = e.box[1] - e.box[0], e.box[3] - e.box[2]
    if e.kind == "text" or min(h, w) < 8 or not 0.5 <= w / h <= 2.0:
        return False
    filled = ndimage.binary_fill_holes(e.mask)
    return bool(filled.sum() >= SOLID * hull_mask(e).sum())


def _glyph_like(e: Element, max_h: int) -> bool:
    """A glyph, or a piece of a line already (a later pass joins the pieces of one line)."""
    h, w = e.box[1] - e.box[0], e.box[3] - e.box[2]
    return h <= max_h and (w <= 3 * max_h or e.kind == "text")


def absorb_pieces(elements: list[Element]) -> list[Element]:
    """Merge each element into a bigger one of the same colour whose hull holds most of it.

    Half is enough: a piece cut off a shape by text across its edge lies partly outside the
    hull of what is left of the shape.
    """
    order = sorted(elements, key=lambda e: -e.area)
    texts = [e for e in elements if e.kind == "text"]
    occupied = _occupied(elements)
    filled: dict[int, np.ndarray] = {}  # id(element) -> its mask, holes filled (asked often)
    kept: list[Element] = []
    hulls: list[np.ndarray] = []
    for e in order:
        for k, big in enumerate(kept):
            if not _same_color(e, big):
                continue
            inside = boxes_meet(e.box, big.box) and fraction_inside(e, big, hulls[k]) >= 0.5
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


def join_specks(elements: list[Element]) -> list[Element]:
    """Each piece no bigger than a couple of glyphs that lies within a text element's box
    joins it: the thin glyphs of small text never reach the ink's full colour, so they come
    out as specks of a lighter shade, and a speck is never a layer of its own."""
    order = sorted(range(len(elements)), key=lambda i: elements[i].area)
    slots: list[Element | None] = [elements[i] for i in order]
    for k, piece in enumerate(slots):
        host = _host_of(piece, slots, k)
        if host is not None:
            slots[host] = union(slots[host], piece)
            slots[k] = None
    kept = sorted((i, e) for i, e in zip(order, slots, strict=True) if e is not None)
    return [e for _, e in kept]  # in their first order: z-order breaks ties by it


def _host_of(piece: Element | None, slots: list[Element | None], k: int) -> int | None:
    """Index of the smallest text element after ``k`` whose box, grown by the piece's
    size, holds ``piece`` and whose glyphs are on average at least half as big as it."""
    if piece is None:
        return None
    r = max(2, piece.box[1] - piece.box[0], piece.box[3] - piece.box[2])
    for j in range(k + 1, len(slots)):
        t = slots[j]
        if t is None or t.kind != "text" or len(t.members) < 2:
            continue
        if piece.area > SPECK_GLYPHS * t.area / len(t.members):
            continue
        y0, y1, x0, x1 = grow(t.box, r)
        if (piece.box[0] >= y0 and piece.box[1] <= y1 and piece.box[2] >= x0
                and piece.box[3] <= x1):
            return j
    return None


def _occupied(elements: list[Element]) -> np.ndarray:
    """Which element (index + 1, 0 for none) lies at each pixel, in a frame as big as the
    elements' boxes reach."""
    h = max((e.box[1] for e in elements), default=0)
    w = max((e.box[3] for e in elements), default=0)
    out = np.zeros((h, w), np.int32)
    for k, e in enumerate(elements, start=1):
        out[e.box[0]:e.box[1], e.box[2]:e.box[3]][e.mask] = k
    return out


def _split_by_cover(piece: Element, big: Element, occupied: np.ndarray,
                    elements: list[Element], filled: dict[int, np.ndarray]) -> bool:
    """Two shape pieces of one colour that something laid across cuts apart: whatever
    lies between them, within the hull of the two, belongs to other elements, and none
    of those is the ground they both stand on (icons in a row on a panel are apart)."""
    if piece.kind != "shape" or big.kind != "shape" or piece.area > big.area:
        return False
    joined = union(big, piece)
    y0, y1, x0, x1 = joined.box
    between = hull_mask(joined) & ~joined.mask
    if not between.any():
        return False
    owners = occupied[y0:y1, x0:x1] * ~joined.mask
    # The anti-aliased seams along the cover belong to no element: grow it by a pixel.
    others = cv2.dilate((owners > 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if (between & others).sum() < _UNDER_COVER * between.sum():
        return False
    # (Asked second: most pairs are not covered between, and the grounds cost more.)
    area = joined.area  # counted once for all the grounds
    return not any(_encloses(elements[k - 1], joined, area, filled)
                   for k in np.unique(owners[between]) if k)


def _encloses(ground: Element, e: Element, area: int, filled: dict[int, np.ndarray]) -> bool:
    """Whether ``e`` (of ``area`` pixels) lies in the holes of ``ground``'s mask (stands on
    it). ``filled`` keeps each ground's mask with its holes filled, by ``id``, for the next
    question."""
    if not boxes_meet(ground.box, e.box):
        return False
    if id(ground) not in filled:
        filled[id(ground)] = ndimage.binary_fill_holes(ground.mask)
    ground_filled = filled[id(ground)]
    y0, y1 = max(ground.box[0], e.box[0]), min(ground.box[1], e.box[1])
    x0, x1 = max(ground.box[2], e.box[2]), min(ground.box[3], e.box[3])
    inside = ground_filled[y0 - ground.box[0]:y1 - ground.box[0],
                           x0 - ground.box[2]:x1 - ground.box[2]]
    part = e.mask[y0 - e.box[0]:y1 - e.box[0], x0 - e.box[2]:x1 - e.box[2]]
    return bool((inside & part).sum() >= 0.5 * area)


def _box_share(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> float:
    """Share of box ``inner`` that lies inside box ``outer``."""
    dy = min(inner[1], outer[1]) - max(inner[0], outer[0])
    dx = min(inner[3], outer[3]) - max(inner[2], outer[2])
    area = (inner[1] - inner[0]) * (inner[3] - inner[2])
    return max(dy, 0) * max(dx, 0) / max(area, 1)


def _sliver(piece: Element, big: Element, texts: list[Element]) -> bool:
    """A piece much smaller than ``big`` whose box lies within ``big``'s box, grown by a
    quarter of its size: a part of it showing between the glyphs laid over it.

    Several such parts in a row look like a line of text themselves; they are parts only
    if they lie in the box of a line of another colour, the text they show through."""
    if piece.area > SLIVER * big.area:
        return False
    if piece.kind == "text" and len(piece.members) >= 3 and not any(
            not _same_color(piece, t) and _box_share(piece.box, t.box) >= 0.5 for t in texts):
        return False
    r = (max(big.box[1] - big.box[0], big.box[3] - big.box[2])) // 4
    return (piece.box[0] >= big.box[0] - r and piece.box[1] <= big.box[1] + r
            and piece.box[2] >= big.box[2] - r and piece.box[3] <= big.box[3] + r)
