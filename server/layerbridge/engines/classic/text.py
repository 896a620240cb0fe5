"""Text: glyphs into lines, specks into their line, faint strokes found, text over shapes.

A design's text layer is a line of glyphs, each a separate component of one colour, side by
side on a line (:func:`text_lines`); the thin glyphs of small text never reach the ink's
full colour and come out as specks of a lighter shade, which join the line they lie in
(:func:`join_specks`). Text lies above the shapes it touches (:func:`text_over_shape`).

Faint strokes: small text one pixel wide is never covered fully by its own colour: each
stroke pixel is a part-opaque mix of the ink and the shape under it, so the strokes break
into tiny pieces of many shades that look like anti-aliasing and are dropped. What gives
them away is where they lie: in holes of a flat shape, away from every other element, and
all their shades on one line from the shape's colour to a single ink colour. Those holes
become an element of that ink whose alpha comes from unmixing alone
(:func:`faint_strokes`, :func:`attach`). The same holds for the hairline parts of a light
typeface on the background, which join the text beside them (:func:`glyph_remnants`), and
for line art drawn in hairlines on the background, which is an element of its own.
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
from layerbridge.engines.classic.box import Box, rewindow
from layerbridge.engines.classic.color import color_distance
from layerbridge.engines.classic.hulls import hull_mask
from layerbridge.engines.classic.regions import Components, Element, element_of, same_color, union
from layerbridge.engines.classic.tuning import TUNING


def text_lines(elements: list[Element], frame: tuple[int, int]) -> list[Element]:
    """Join small flat components of one colour that sit side by side on a line (``frame``:
    the image's height and width, which bound a glyph's height)."""
    max_h = _max_glyph_height(frame)
    small = [i for i, e in enumerate(elements) if e.color is not None and _glyph_like(e, max_h)]
    if len(small) < 2:
        return elements
    n, lab = _lines_of([elements[i] for i in small])
    # A row of solid blobs (icons on discs, bullets) is no text: each keeps its own layer.
    solid = np.array([_solid(elements[i]) for i in small])
    icons = np.bincount(lab, ~solid, minlength=n) == 0
    return _joined(elements, small, lab, ~icons & (np.bincount(lab, minlength=n) >= 2))


def title_lines(elements: list[Element], frame: tuple[int, int]) -> list[Element]:
    """Join the words of a line too tall for :func:`text_lines` (a banner's title, each word
    a layer of its own): flat pieces of one colour side by side on a line, up to
    TUNING.title_share of the image's height, of which at least one is text already and
    none is a solid blob. Their layers lie side by side: only the line's layer changes."""
    tall = [i for i, e in enumerate(elements)
            if e.color is not None and e.kind in ("text", "shape")
            and e.box.height <= TUNING.title_share * frame[0] and not _solid(e)]
    if len(tall) < 2:
        return elements
    n, lab = _lines_of([elements[i] for i in tall])
    has_text = np.bincount(lab, [elements[i].kind == "text" for i in tall], minlength=n) > 0
    return _joined(elements, tall, lab, has_text & (np.bincount(lab, minlength=n) >= 2))


def _joined(elements: list[Element], picked: list[int], lab: np.ndarray, join: np.ndarray
            ) -> list[Element]:
    """``elements`` with the ``picked`` ones of each line (``lab``: per picked one, its line)
    that ``join`` says yes to made one text element; the others as they were."""
    lines: dict[int, Element] = {}
    joined: set[int] = set()
    for k, i in enumerate(picked):
        g = int(lab[k])
        if join[g]:
            lines[g] = union(lines[g], elements[i]) if g in lines else elements[i]
            joined.add(i)
    out = [e for i, e in enumerate(elements) if i not in joined]
    return out + [Element(e.box, e.mask, e.color, "text", e.members, e.unmixed)
                  for e in lines.values()]


def _lines_of(pieces: list[Element]) -> tuple[int, np.ndarray]:
    """(count, label per piece) of the lines that flat ``pieces`` make: pieces side by side
    on a line in one colour (:func:`_side_by_side`), joined through each other."""
    boxes = np.array([e.box for e in pieces], np.float64)
    first, second = _side_by_side(boxes, np.array([e.color for e in pieces]))
    count = len(pieces)
    near = coo_matrix((np.ones(first.size, bool), (first, second)), shape=(count, count))
    n, lab = connected_components(near, directed=False)
    return int(n), lab


#: Pairs of glyphs weighed at a time by :func:`_side_by_side`.
_PAIRS_AT_A_TIME = 1 << 20


def _side_by_side(boxes: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of glyphs (rows of ``boxes`` y0, y1, x0, x1 and ``col``) that sit side by
    side on one line in one colour. Only glyphs whose rows overlap are weighed, found from
    the glyphs sorted by top, a bounded number of pairs at a time: a page of thousands of
    glyphs (the blocks path) never builds an n x n matrix."""
    y0, y1, x0, x1 = boxes.T
    order = np.argsort(y0, kind="stable")
    n = order.size
    # Glyph at sorted place p is weighed against the places after it that start above its
    # bottom (those after it start no higher: an overlap needs no more).
    ends = np.searchsorted(y0[order], y1[order], side="left")
    counts = np.maximum(ends - np.arange(n) - 1, 0)
    # Pairs weighed up to and including each place: a chunk ends where they pass the bound.
    total = np.cumsum(counts)
    ratio = TUNING.line_height_ratio
    found: list[tuple[np.ndarray, np.ndarray]] = []
    start = 0
    while start < n:
        before = total[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(total, before + _PAIRS_AT_A_TIME,
                                                  side="right")))
        per = counts[start:stop]
        places = np.repeat(np.arange(start, stop), per)
        after = np.arange(places.size) - np.repeat(np.cumsum(per) - per, per) + 1
        i, j = order[places], order[places + after]
        h_i, h_j = y1[i] - y0[i], y1[j] - y0[j]
        overlap_y = np.minimum(y1[i], y1[j]) - np.maximum(y0[i], y0[j])
        gap_x = np.maximum(x0[i], x0[j]) - np.minimum(x1[i], x1[j])
        keep = ((overlap_y >= TUNING.line_overlap * np.minimum(h_i, h_j))
                & (gap_x <= TUNING.word_gap * np.maximum(h_i, h_j))
                & (color_distance(col[i], col[j]) <= TUNING.same_color)
                & (h_i <= ratio * h_j) & (h_j <= ratio * h_i))
        found.append((i[keep], j[keep]))
        start = stop
    return np.concatenate([f for f, _ in found]), np.concatenate([s for _, s in found])


def block_inks(blocks: list[Element], rgb: np.ndarray, field: Background,
               frame: tuple[int, int]) -> list[Element]:
    """``blocks`` with each glyph-sized one of many shades that are all one ink laid at part
    opacity over the background, or over the colour around it (an anti-aliased glyph on a
    page or on a panel) given that ink as its colour, so that :func:`text_lines` can join
    the glyphs of a line (letter-spaced capitals are each a block of their own)."""
    max_h = _max_glyph_height(frame)
    out = []
    for e in blocks:
        if e.color is None and _glyph_like(e, max_h):
            shades = rgb[e.box.slices][e.mask]
            under = field.render_box(*e.box)[e.mask]
            offset = _ink_offset(shades, under)
            if offset is None:
                # A glyph on a panel: laid over the panel's colour, around it.
                under = np.broadcast_to(_around(e, rgb), shades.shape)
                offset = _ink_offset(shades, under)
            if offset is not None:
                ink = np.clip(under.mean(0) + offset, 0.0, 1.0)
                e = Element(e.box, e.mask, ink, "shape", e.members)
        out.append(e)
    return out


def _around(e: Element, rgb: np.ndarray) -> np.ndarray:
    """The median colour of the pixels just around ``e``."""
    around = e.box.grow(1, rgb.shape[:2])
    return np.median(rgb[around.slices][_ring(e, 1, around)], 0)


def _ring(e: Element, width: int, around: Box) -> np.ndarray:
    """The pixels of box ``around`` within ``width`` of ``e`` that are not ``e``'s."""
    own = rewindow(e.mask, e.box, around).astype(np.uint8)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return cv2.dilate(own, kernel).astype(bool) & ~own.astype(bool)


def lines_over_photo(comp: Components, rgb: np.ndarray) -> list[Element]:
    """Lines of text laid over a photo (a title on a picture): flat components clear of
    the image's edge that join lines of at least TUNING.inlay_min_count glyphs of a median
    TUNING.photo_text_min_glyph pixels (a photo's flat specks in a row, the dots of a
    halftone, are smaller), whose ink stands out from what is around it."""
    h, w = rgb.shape[:2]
    parts = [element_of(comp, label, TUNING.flat_std) for label, box in comp.boxes.items()
             if comp.std[label] <= TUNING.flat_std and not box.touches_edge(h, w)]
    lines = [e for e in text_lines(parts, (h, w))
             if e.kind == "text" and len(e.members) >= TUNING.inlay_min_count
             and np.median(comp.area[e.members]) >= TUNING.photo_text_min_glyph]
    lines = [e for e in lines if _stands_out(e, comp, rgb)]
    # A line inside another's box is specks in its counters.
    areas = [e.area for e in lines]
    return [e for e, area in zip(lines, areas, strict=True)
            if not any(a > area and o.box.contains(e.box)
                       for o, a in zip(lines, areas, strict=True))]


def _stands_out(e: Element, comp: Components, rgb: np.ndarray) -> bool:
    """Whether ``e``'s ink differs by TUNING.photo_text_contrast from the mean of the pixels
    around it, and past its rim it is not enclosed by flat components of a size with it:
    the counters of glyphs (holes in letters) and the gaps between a logo's letters stand
    out too."""
    r = TUNING.photo_text_ring
    around = e.box.grow(2 * r, rgb.shape[:2])
    ring = _ring(e, r, around)
    assert e.color is not None
    if float(np.abs(rgb[around.slices][ring].mean(0) - e.color).max()) < TUNING.photo_text_contrast:
        return False
    # Past the anti-aliased rim, whose pixels are components of their own.
    far = _ring(e, 2 * r, around) & ~ring
    labels, counts = np.unique(comp.labels[around.slices][far], return_counts=True)
    area = comp.area[labels]
    hosts = ((comp.std[labels] <= TUNING.flat_std) & (area >= TUNING.min_area)
             & (area <= TUNING.photo_text_host * e.area))
    return bool(counts[hosts].sum() < TUNING.photo_text_enclosed * counts.sum())


def _max_glyph_height(frame: tuple[int, int]) -> int:
    """The tallest glyph of an image of ``frame`` (height, width; see :class:`Tuning`):
    ``max_glyph`` pixels grow with the image's short side past ``glyph_reference_side`` (a
    print at 300 dpi or a screen at twice the density draws its text in more pixels)."""
    height, width = frame
    cap = TUNING.max_glyph * max(1.0, min(height, width) / TUNING.glyph_reference_side)
    return max(TUNING.min_glyph, min(int(cap), int(TUNING.glyph_share * height)))


def _solid(e: Element) -> bool:
    """Whether ``e`` is a disc or a square: about as wide as high, not small, and its
    outline, holes filled, convex; unlike the glyphs of a word or the stems of a letter cut
    apart (a word of only o's is rare)."""
    h, w = e.box.height, e.box.width
    aspect = TUNING.solid_max_aspect
    if e.kind == "text" or min(h, w) < TUNING.solid_min_side or not 1 / aspect <= w / h <= aspect:
        return False
    filled = ndimage.binary_fill_holes(e.mask)
    return bool(filled.sum() >= TUNING.solid * hull_mask(e).sum())


def _glyph_like(e: Element, max_h: int) -> bool:
    """A glyph, or a piece of a line already (a later pass joins the pieces of one line)."""
    h, w = e.box.height, e.box.width
    return h <= max_h and (w <= 3 * max_h or e.kind == "text")


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


def drop_enclosed_specks(elements: list[Element]) -> list[Element]:
    """Without the elements of fewer than TUNING.enclosed_speck pixels mostly surrounded by
    a bigger element (TUNING.enclosed_ring of the pixels around them): a speck inside a
    letter or a shape (a counter's anti-aliased shade) is no layer, and as one it would
    stand over its host, a level the design lacks. Its pixels stay with whatever is peeled
    over them, or the background."""
    big = [e for e in elements if e.area >= TUNING.enclosed_speck]
    return [e for e in elements if e.area >= TUNING.enclosed_speck
            or not any(_ring_share(e, b) >= TUNING.enclosed_ring for b in big)]


def _ring_share(speck: Element, host: Element) -> float:
    """The share of the pixels just around ``speck`` that ``host`` covers."""
    around = speck.box.grow(1)
    if not host.box.contains(around):
        return 0.0
    return float(host.mask[around.within(host.box)][_ring(speck, 1, around)].mean())


def _host_of(piece: Element | None, slots: list[Element | None], k: int) -> int | None:
    """Index of the smallest text element after ``k`` whose box, grown by the piece's
    size, holds ``piece`` and whose glyphs are on average at least half as big as it."""
    if piece is None:
        return None
    r = max(2, piece.box.height, piece.box.width)
    for j in range(k + 1, len(slots)):
        t = slots[j]
        if t is None or t.kind != "text" or len(t.members) < 2:
            continue
        if piece.area > TUNING.speck_glyphs * t.area / len(t.members):
            continue
        if t.box.grow(r).contains(piece.box):
            return j
    return None


def text_over_shape(a: Element, b: Element) -> tuple[bool, bool] | None:
    """(a above b, b above a) when one of the two is text and the other not: text goes
    above the shapes it touches. None when both or neither are text."""
    if (a.kind == "text") != (b.kind == "text"):
        return a.kind == "text", b.kind == "text"
    return None


def faint_strokes(elements: list[Element], rgb: np.ndarray, background: np.ndarray
                  ) -> list[Element]:
    """Stroke elements found in the holes of the flat shapes among ``elements``; a shape
    whose holes hold its own texture instead (noise, a dither) takes it into its mask.

    ``background`` is the full-frame mask of pixels the background field explains.
    """
    claimed = _paint(elements, background.copy())
    out = []
    for host in elements:
        too_small = host.area < TUNING.stroke_host_areas * TUNING.min_area
        if host.color is None or host.kind != "shape" or too_small:
            continue
        out += _strokes_in(host, rgb, claimed, background)
    return out


def glyph_remnants(elements: list[Element], rgb: np.ndarray, background: np.ndarray,
                   field: Background, check: Callable[[], None] = lambda: None
                   ) -> list[Element]:
    """Elements grown by the thin parts of their glyphs that lie on the background, and
    line art found there.

    A light typeface has strokes so thin that whole glyphs are only anti-aliasing, left in
    the background; a cluster of them right next to a flat element, all of their shades
    mixes of the background and that element's colour, is a part of that element. A cluster
    near no such element, of :data:`TUNING.line_art_min` pixels or more and all its shades
    one ink over the background, is line art (an outlined icon, a key's outline, a hand-drawn
    stroke): an element of its own, not a drawing left on the page.
    """
    claimed = _paint(elements, np.zeros(background.shape, bool))
    kernel = np.ones((TUNING.stroke_clearance, TUNING.stroke_clearance), np.uint8)
    free = ~cv2.dilate(claimed.astype(np.uint8), kernel).astype(bool) & ~_drop_specks(background)
    if not free.any():
        return elements
    ys, xs = np.nonzero(free)
    far = np.zeros(background.shape, bool)
    far[ys, xs] = color_distance(rgb[ys, xs], field.render(ys, xs)) > TUNING.ink_step
    out = list(elements)
    for window, piece in _clusters(far):
        if piece.sum() > TUNING.max_remnant * far.size:
            continue  # a textured area (a photo), not the thin parts of a few glyphs
        check()
        box = Box.of_window(window)
        under = field.render_box(*box)
        k = _nearest_same_ink(out, box, rgb[window][piece], under[piece])
        if k is not None:
            color = out[k].color
            offset = color - under[piece].mean(0)
            core = _core(rgb[window], under, offset, piece)
            if core is not None:
                out[k] = union(out[k], Element(box, core, color, "text"))
        elif piece.sum() >= TUNING.line_art_min:
            line = _line_art(box, rgb[window], under, piece)
            if line is not None:
                out.append(line)
    return out


def _line_art(box: Box, shades: np.ndarray, under: np.ndarray, piece: np.ndarray
              ) -> Element | None:
    """An element of ink ``piece`` (in ``box``), if all its shades are one ink laid at part
    opacity over the background ``under`` it: an icon or a word drawn in hairlines, whose
    every piece is too thin or too small to be an element of its own."""
    offset = _ink_offset(shades[piece], under[piece])
    if offset is None:
        return None
    core = _core(shades, under, offset, piece)
    if core is None:
        return None
    ink = np.clip(under[piece].mean(0) + offset, 0.0, 1.0)
    return Element(box, core, ink, "shape", [], unmixed=True)


def _paint(elements: list[Element], canvas: np.ndarray) -> np.ndarray:
    """``canvas`` (full frame) with every element's mask set on it."""
    for e in elements:
        canvas[e.box.slices] |= e.mask
    return canvas


def _nearest_same_ink(elements: list[Element], box: Box, shades: np.ndarray, under: np.ndarray
                      ) -> int | None:
    """The nearest flat element within a glyph's height of ``box`` whose colour, laid at
    part opacity over ``under``, gives ``shades``; None if there is none."""
    reach = box.height
    best, best_gap = None, np.inf
    for k, e in enumerate(elements):
        gap = e.box.gap(box)
        if e.color is None or gap > min(reach, e.box.height) or gap >= best_gap:
            continue
        d = e.color - under
        norm = (d * d).sum(-1)
        if np.any(norm < TUNING.min_ink_contrast**2):
            continue
        t = np.clip(((shades - under) * d).sum(-1) / norm, 0.0, 1.0)
        miss = color_distance(shades - under, t[:, None] * d)
        if np.quantile(miss, TUNING.shade_quantile) <= TUNING.on_line:
            best, best_gap = k, gap
    return best


def attach(strokes: list[Element], elements: list[Element]) -> list[Element]:
    """``elements`` with each stroke element joined to the nearest element of its ink, or
    added as one of its own: thin parts of a text whose thicker glyphs were found already
    (the dot of an i, a thin serif) are that text, not a second layer over it."""
    out = list(elements)
    for stroke in strokes:
        reach = stroke.box.height
        gaps = [e.box.gap(stroke.box) if same_color(e, stroke) else np.inf for e in elements]
        k = int(np.argmin(gaps)) if gaps else 0
        if gaps and gaps[k] <= reach:
            out[k] = union(out[k], stroke)
        else:
            out.append(stroke)
    return out


def _strokes_in(host: Element, rgb: np.ndarray, claimed: np.ndarray, background: np.ndarray
                ) -> list[Element]:
    """Stroke elements in the holes of ``host`` that nothing in ``claimed`` explains (the
    ``background`` is a part of it)."""
    holes = ndimage.binary_fill_holes(host.mask) & ~host.mask
    if holes.sum() < TUNING.min_area:
        return []
    # Whatever else is claimed in the box (other elements, background seen through the
    # shape) keeps a margin: its anti-aliased rim is a mix too, but of its own colour.
    others = _drop_specks(claimed[host.box.slices] & ~host.mask)
    kernel = np.ones((TUNING.stroke_clearance, TUNING.stroke_clearance), np.uint8)
    near_others = cv2.dilate(others.astype(np.uint8), kernel).astype(bool)
    crop = rgb[host.box.slices]
    ink = holes & ~near_others & (color_distance(crop, host.color) > TUNING.ink_step)
    if ink.sum() < TUNING.min_area:
        return []
    page = background[host.box.slices] & ~host.mask  # seen through the shape's holes
    pieces = []
    for window, piece in _clusters(ink):
        box = Box.of_window(window, (host.box.y0, host.box.x0))
        big = box.height * box.width > TUNING.stroke_max_share * host.box.height * host.box.width
        if big or _soft_edge(host, page, crop, window, piece):
            host.mask[window] |= piece  # the shape's own texture, or its soft edge
            continue
        shades = crop[window]
        offset = _ink_offset(shades[piece], host.color)
        if offset is not None:
            core = _core(shades, host.color, offset, piece)
            if core is not None:
                pieces.append((box, core, offset))
    return [reduce(union, group) for group in _by_ink(pieces, host.color)]


def _soft_edge(host: Element, page: np.ndarray, crop: np.ndarray, window: tuple[slice, slice],
               piece: np.ndarray) -> bool:
    """Whether the ink ``piece`` (at ``window`` of ``host``'s box) is ``host``'s soft edge
    against the ``page`` seen through its hole: it touches both, and every shade of it is
    a mix of the two colours (an upscaled shape's edge is wider than the clearance kept
    from the page)."""
    at = Box.of_window(window)
    around = at.grow(TUNING.stroke_clearance, host.mask.shape)
    own = rewindow(piece, at, around)
    # Past the clearance: the page's rim within it was kept out of the ink.
    reach = 2 * TUNING.stroke_clearance + 1
    near = cv2.dilate(own.astype(np.uint8), np.ones((reach, reach), np.uint8)).astype(bool) & ~own
    seen = near & page[around.slices]
    if not seen.any() or not (near & host.mask[around.slices]).any():
        return False
    assert host.color is not None
    under = np.median(crop[around.slices][seen], 0)
    towards = host.color - under
    norm = float(towards @ towards)
    if norm < TUNING.min_ink_contrast**2:
        return False
    shades = crop[around.slices][own] - under
    t = np.clip(shades @ towards / norm, 0.0, 1.0)
    miss = color_distance(shades, t[:, None] * towards)
    # A ramp between the two; not marks of the page's own colour (an icon cut out of a
    # bar at the page's edge), nor of the shape's.
    ramp = TUNING.stroke_core / 2 <= float(np.median(t)) <= 1 - TUNING.stroke_core / 2
    return ramp and bool(np.quantile(miss, TUNING.shade_quantile) <= TUNING.on_line)


def _clusters(ink: np.ndarray):
    """(window, mask in the window) per cluster of ink pixels near one another."""
    join = TUNING.stroke_join
    joined = cv2.dilate(ink.astype(np.uint8), np.ones((join, join), np.uint8))
    labels, _ = ndimage.label(joined, structure=np.ones((3, 3)))
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        yield window, ink[window] & (labels[window] == index)


def _core(shades: np.ndarray, under: np.ndarray, offset: np.ndarray, piece: np.ndarray
          ) -> np.ndarray | None:
    """The pixels of ``piece`` covered by the ink (``under + offset``) to at least stroke_core.

    The faintest fringe is left out of the mask: the peel unmixes a band around the mask,
    which gives the fringe its own small alpha, while pixels in the mask of an element
    joined to a solid one are taken as opaque."""
    t = ((shades - under) * offset).sum(-1) / float(offset @ offset)
    core = piece & (t >= TUNING.stroke_core)
    return core if core.sum() >= 3 else None


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its pieces smaller than an element: a stroke pixel that happens to
    match the background's colour is no background seen through the shape."""
    labels, count = ndimage.label(mask)
    big = np.bincount(labels.ravel(), minlength=count + 1) >= TUNING.min_area
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
            if unit @ strongest / np.linalg.norm(strongest) >= TUNING.same_ink:
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
            near[i, j] = elements[i].box.grow(1).intersects(elements[j].box)
    count, label = connected_components(coo_matrix(near), directed=False)
    return [[e for e, g in zip(elements, label, strict=True) if g == k] for k in range(count)]


def _ink_offset(shades: np.ndarray, under: np.ndarray) -> np.ndarray | None:
    """How far the strongest shades lie from ``under`` (ink minus shape colour, when the ink
    covers some pixels fully), if every shade is that ink laid at part opacity over
    ``under``; None when the shades are too few, too faint, or not on one line."""
    if len(shades) < TUNING.min_area:
        return None
    offset = shades - under
    strength = np.linalg.norm(offset, axis=1)
    strongest = offset[strength >= np.quantile(strength, TUNING.shade_quantile)].mean(0)
    if np.abs(strongest).max() < TUNING.min_ink_contrast:
        return None
    t = np.clip(offset @ strongest / float(strongest @ strongest), 0.0, 1.0)
    miss = color_distance(offset, t[:, None] * strongest)
    if np.quantile(miss, TUNING.shade_quantile) > TUNING.on_line:
        return None
    return strongest
