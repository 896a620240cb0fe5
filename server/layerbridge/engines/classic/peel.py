"""Peel one element off the image: its alpha, its colour, and the plate left under it.

Alpha comes from colour unmixing against the plate, ``a = <I - B, C - B> / |C - B|^2``,
which is exact on anti-aliased edges of flat elements. It is then raised to the smallest
value that keeps the un-blended colour ``F = (I - (1 - a) B) / a`` inside [0, 1], and
quantised upwards to 8 bits before ``F`` is taken, so ``a F + (1 - a) B`` is the input to
within half a level; the plate is recomputed from the rounded layer so no error carries on.
That is why the over-composite of the returned layers reproduces the input.

An element's own pixels are opaque, except on the rim of text and of blocks (the blocks
path's paragraphs): there a pixel that a mix of the ink and the plate explains is that ink
laid part opaque, since thin strokes and glyphs' anti-aliased edges are mixes all along.

:func:`peel_elements` peels a scene's elements top down, each over its box grown by a band:
its shape completed under the elements above it (amodal.py), the plate under it filled from
the lower elements or the background field (fill.py), a flat veil unmixed against black or
white.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from layerbridge.engines.classic.amodal import complete
from layerbridge.engines.classic.background import background_mask
from layerbridge.engines.classic.box import Box, rewindow
from layerbridge.engines.classic.color import channel_max, color_distance
from layerbridge.engines.classic.fill import Cover, fill_plate
from layerbridge.engines.classic.hulls import holes, hull_mask
from layerbridge.engines.classic.naming import layer_name
from layerbridge.engines.classic.regions import Element
from layerbridge.engines.classic.scene import Piece, Scene
from layerbridge.engines.classic.tuning import TUNING

#: An element's whole shape: its mask over its box (the convex hull of what shows, or the
#: shape completed under the elements above it).
Shape = tuple[np.ndarray, Box]


def unmix_alpha(image: np.ndarray, plate: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Alpha of a flat ``color`` over ``plate`` explaining ``image`` (all (..., 3))."""
    d = color - plate
    norm = (d * d).sum(-1)
    a = ((image - plate) * d).sum(-1) / np.maximum(norm, 1e-12)
    a = np.where(norm >= TUNING.min_contrast**2, a, 0.0)
    return np.clip(a, 0.0, 1.0)


def min_alpha(image: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """Smallest alpha for which ``F = (I - (1 - a) B) / a`` stays inside [0, 1]."""
    up = np.where(image > plate, (image - plate) / np.maximum(1.0 - plate, 1e-12), 0.0)
    down = np.where(image < plate, (plate - image) / np.maximum(plate, 1e-12), 0.0)
    return np.clip(channel_max(np.maximum(up, down)), 0.0, 1.0)


def split_layer(
    image: np.ndarray, plate: np.ndarray, alpha: np.ndarray, rest_color: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(8-bit-exact float RGBA layer, new image under it) for one peel in a crop.

    ``rest_color`` is the colour kept under alpha 0 (the element's own colour), so the layer
    looks right if someone raises its opacity; None keeps the image's colour.
    """
    a = np.maximum(alpha, min_alpha(image, plate))
    a = np.ceil(a * 255.0 - 1e-6) / 255.0
    a = np.clip(a, 0.0, 1.0)
    a3 = a[..., None]
    color = np.divide(image - (1.0 - a3) * plate, a3, out=image.copy(), where=a3 > 0)
    color = np.rint(np.clip(color, 0.0, 1.0) * 255.0) / 255.0
    if rest_color is not None:
        color[a <= 0] = rest_color
    under = np.divide(image - a3 * color, 1.0 - a3, out=plate.copy(), where=a3 < 1)
    under = np.where(a3 > 0, np.clip(under, 0.0, 1.0), image)
    return np.concatenate([color, a3], -1), under


def peel_elements(scene: Scene) -> tuple[np.ndarray, list[Piece]]:
    """Peel the scene's elements off its image top down: (what is left under them all, the
    elements' layers bottom first)."""
    assert scene.rgb is not None
    h, w = scene.frame
    image = scene.rgb.copy()
    hulls = _shapes(scene.elements, h, w)
    peeled: list[Piece] = []
    n = len(scene.elements)
    numbers = _numbers_by_kind(scene.elements)
    for k in range(n - 1, -1, -1):
        scene.check()
        scene.progress((n - 1 - k) / max(n, 1))
        box, layer = _peel_one(image, scene, k, hulls)
        peeled.append(Piece(layer_name(scene.elements[k], numbers[k]), box, layer))
    return image, peeled[::-1]


def _numbers_by_kind(elements: list[Element]) -> list[int]:
    """Each element's number among those of its kind, bottom up: Text 1, Text 2, Shape 1."""
    seen: dict[str, int] = {}
    numbers = []
    for e in elements:
        seen[e.kind] = seen.get(e.kind, 0) + 1
        numbers.append(seen[e.kind])
    return numbers


def _shapes(elements: list[Element], h: int, w: int) -> list[Shape]:
    """(mask, box) per element: its shape completed under the elements above it where it is
    a hidden rectangle or ellipse, else its convex hull."""
    out: list[Shape] = [(hull_mask(e), e.box) for e in elements]
    cover = np.zeros((h, w), bool)
    for j in range(len(elements) - 1, -1, -1):
        e = elements[j]
        whole = complete(e, cover) if cover.any() else None
        if whole is not None:
            out[j] = whole
        cover[e.box.slices] |= e.mask
    return out


def _bent(e: Element) -> bool:
    """Whether flat shape ``e``, holes filled, fills too little of its convex hull for the
    hull to say where it goes on under what covers it (a pictogram, a plus)."""
    if e.color is None:
        return False
    solid = e.area + holes(e.mask)[2].sum()
    return bool(solid < TUNING.bent_solidity * hull_mask(e).sum())


def _peel_one(image: np.ndarray, scene: Scene, k: int, hulls: list[Shape]
              ) -> tuple[Box, np.ndarray]:
    """Peel element ``k`` off ``image`` in place; return its box and float RGBA layer there."""
    h, w = image.shape[:2]
    e = scene.elements[k]
    # The completed shape's box: an element that continues under the ones above it
    # reaches past its visible part.
    _, whole = hulls[k]
    box = e.box.union(whole).grow(TUNING.peel_band, (h, w))
    core = rewindow(e.mask, e.box, box)
    if k in scene.hidden:
        # The plate under upper elements was filled with this element's colour (or its
        # texture): it continues there, so its layer covers it (a whole shape, not only its
        # visible part).
        core |= scene.hidden[k][box.slices]
    kernel = np.ones((2 * TUNING.peel_band + 1, 2 * TUNING.peel_band + 1), np.uint8)
    region = cv2.dilate(core.astype(np.uint8), kernel).astype(bool)
    covers, lower_cores = _lower_covers(scene, k, hulls, box, core, image[box.slices])
    region &= ~lower_cores | core
    plate, claims = fill_plate(image, region, box, [cover for cover, _ in covers],
                               scene.background)
    for (cover, j), take in zip(covers, claims, strict=True):
        # A shape or a photo goes on under what lies on it. Other textures (a gradient, an
        # icon, the blocks path's blocks) stop at what shows: made to go on, they lay under
        # text that the development set's files draw in them (results, round 18).
        goes_on = cover.color is not None or scene.elements[j].kind == "photo"
        if goes_on and take.any():
            scene.hidden.setdefault(j, np.zeros((h, w), bool))[box.slices] |= take
    crop = image[box.slices]
    # Panels running off the canvas and text are taken as opaque: grey on grey is more
    # often an opaque fill than a veil, except for a label box floating over the page.
    border = e.box.touches_edge(h, w)
    floating = e.kind == "shape" and not border and k not in scene.soft_alpha
    veil = _veil(plate[core], e.color) if floating else None
    if veil is not None:
        alpha = unmix_alpha(crop, plate, veil)
    else:
        alpha = _element_alpha(crop, plate, core, e, scene.soft_alpha.get(k), box)
    color = veil if veil is not None else e.color
    # Pixels the plate matches already are not this element's: the plate (a fitted field)
    # may miss the image by a level, and a speck of alpha there would put the layer over
    # its neighbours.
    region &= core | (color_distance(crop, plate) > TUNING.plate_tol)
    if color is not None:
        # The band around the element may hold the anti-aliased rim of a lower element
        # that only meets it: no mix of this colour over the plate, so not this layer's.
        region &= core | _explained(crop, plate, alpha, color)
    alpha[~region] = 0.0
    if scene.surround is not None:
        alpha[region & bare(crop, plate, scene.surround)] = 1.0
    plate[~region] = crop[~region]
    layer, under = split_layer(crop, plate, alpha, color)
    image[box.slices] = under
    return box, layer


def bare(image: np.ndarray, plate: np.ndarray, surround: np.ndarray) -> np.ndarray:
    """The visible pixels with nothing under them: the plate there is the transparent
    surround's key colour. An element's pixel there is opaque, never a part-opaque mix over
    the key colour (an outline's pixels came out in garbage colours over a key-coloured line
    left in the background, which showed when the layer moved)."""
    tol = TUNING.surround_tol
    return (color_distance(plate, surround) <= tol) & (color_distance(image, surround) > tol)


def _explained(image: np.ndarray, plate: np.ndarray, alpha: np.ndarray, color: np.ndarray
               ) -> np.ndarray:
    """Pixels that ``color`` at ``alpha`` over ``plate`` reproduces to within unmix_tol."""
    mix = plate + alpha[..., None] * (color - plate)
    return color_distance(image, mix) <= TUNING.unmix_tol


def _veil(under: np.ndarray, color: np.ndarray | None) -> np.ndarray | None:
    """Black or white if the flat ``color`` is exactly that laid at part opacity over the
    flat plate ``under`` it (a scrim or a translucent label), else None."""
    if color is None or len(under) < TUNING.min_area:
        return None
    plate = under.mean(0)
    if color_distance(under, plate).mean() > TUNING.veil_tol:
        return None
    for extreme in (np.zeros(3), np.ones(3)):
        d = extreme - plate
        norm = float(d @ d)
        if norm < TUNING.veil_min_contrast:
            continue
        a = float((color - plate) @ d) / norm
        if (TUNING.veil_min_alpha <= a <= TUNING.veil_max_alpha
                and np.abs(plate + a * d - color).max() <= TUNING.veil_tol):
            return extreme
    return None


def _element_alpha(crop, plate, core, e: Element, soft, box) -> np.ndarray:
    if soft is not None:
        return rewindow(soft, e.box, box)
    if e.color is None:
        if e.kind == "group":
            return _rim_unmixed(crop, plate, core)
        return core.astype(np.float64)
    alpha = unmix_alpha(crop, plate, e.color)
    if e.unmixed:
        return alpha
    if e.kind == "text":
        # Thin strokes are mixes of the ink and what is under them all along, yet they are
        # the text's own component: on a glyph's rim only the pixels that show the ink are
        # opaque. Inside it (a soft gradient in the ink) no pixel is a mix.
        core = core & (_inside(core) | (color_distance(crop, e.color) <= TUNING.unmix_tol))
    alpha[core] = 1.0
    return alpha


def _inside(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` whose eight neighbours are all in it: off its rim."""
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _rim_unmixed(crop: np.ndarray, plate: np.ndarray, core: np.ndarray) -> np.ndarray:
    """Alpha of a block of many colours (the blocks path's paragraphs, often in several
    inks): opaque inside, and on its rim each pixel that a mix of its nearest inner pixel's
    colour and the plate explains is that colour laid part opaque (its glyphs' anti-aliased
    edges). Photos keep their hard edges: a photo's rim pixel of a colour between its
    neighbour's and the page's is the photo's own (silph-league 0.481 -> 0.300)."""
    alpha = core.astype(np.float64)
    inside = _inside(core)
    if not inside.any():
        return alpha
    _, (rows, cols) = ndimage.distance_transform_edt(~inside, return_indices=True)
    ink = crop[rows, cols]
    mixed = unmix_alpha(crop, plate, ink)
    explained = color_distance(crop, plate + mixed[..., None] * (ink - plate))
    contrast = ((ink - plate) ** 2).sum(-1) >= TUNING.min_contrast**2
    rim = core & ~inside & contrast & (explained <= TUNING.unmix_tol)
    alpha[rim] = mixed[rim]
    return alpha


def _lower_covers(scene: Scene, k: int, hulls: list[Shape], box: Box, core: np.ndarray,
                  crop: np.ndarray) -> tuple[list[tuple[Cover, int]], np.ndarray]:
    """(cover, index) of lower elements over ``box``, topmost first, and their cores.

    Only a shape that runs along the element's outline, where its hull reaches, goes on
    under it: a line of text (its hull is no shape) or a frame around it (the element lies
    in its hole, the page shows between them) does not. Nor, as a rule, does a bent shape
    round the page (a pictogram, a plus): but one that the element crosses, joining its
    parts (a sign's bar over it), goes on under it where it lies nearer than the page."""
    covers = []
    cores = np.zeros((box.height, box.width), bool)
    page = None  # the page's pixels over the box, found once if a texture needs them
    near = cv2.dilate(core.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    ring = near & ~cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    for j in range(k - 1, -1, -1):
        e = scene.elements[j]
        shape, shape_box = hulls[j]
        if not shape_box.intersects(box):
            continue
        mask = rewindow(e.mask, e.box, box)
        cores |= mask
        hull = rewindow(shape, shape_box, box)
        if e.kind == "text":
            continue
        runs_along = (mask & ring).sum() >= TUNING.cover_share * (hull & ring).sum()
        if not runs_along:
            crosses = (core & ~hull).sum() >= (core & hull).sum()
            if not (crosses and _bent(e)):
                continue
            page = _page(scene, box, crop) if page is None else page
            hull = hull & _nearer(mask, page)
            if not _bridged(mask, hull & near):
                continue
        if e.color is None:
            page = _page(scene, box, crop) if page is None else page
            own = mask & ~page
        else:
            own = mask
        covers.append((Cover(hull, e.color, own), j))
    return covers, cores


def _page(scene: Scene, box: Box, crop: np.ndarray) -> np.ndarray:
    """The pixels of ``crop`` (over ``box``) that the background field explains: the page
    (or a transparent surround) showing through a photo's gaps, which a photo's mask may
    hold but whose colours are not the photo's."""
    bg = scene.background
    if bg is None or not bg.ok:
        return np.zeros(crop.shape[:2], bool)
    return background_mask(crop, bg, (box.y0, box.x0), TUNING.plate_tol)


def _bridged(mask: np.ndarray, under: np.ndarray) -> bool:
    """Whether ``under`` joins parts of ``mask`` that are apart without it."""
    apart = cv2.connectedComponents(mask.astype(np.uint8))[0]
    return bool(cv2.connectedComponents((mask | under).astype(np.uint8))[0] < apart)


def _nearer(mask: np.ndarray, page: np.ndarray) -> np.ndarray:
    """The pixels nearer to ``mask`` than to ``page``."""
    to_mask = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    to_page = cv2.distanceTransform((~page).astype(np.uint8), cv2.DIST_L2, 3)
    return to_mask < to_page
