"""The classic decomposition, start to end: find elements, order them, peel them off.

``decompose`` is host-free (numpy in, float RGBA layers out) so tests and benchmarks call
it directly; the engine wraps it with the job protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from layerbridge.engines.classic import photo
from layerbridge.engines.classic.amodal import complete
from layerbridge.engines.classic.background import Background, background_mask, fit_background
from layerbridge.engines.classic.clipping import join_clipped
from layerbridge.engines.classic.fill import fill_plate
from layerbridge.engines.classic.grouping import absorb_pieces, join_specks, text_lines
from layerbridge.engines.classic.hulls import hull_mask
from layerbridge.engines.classic.merging import merge_alike, merge_to_count
from layerbridge.engines.classic.naming import layer_name
from layerbridge.engines.classic.order import z_order
from layerbridge.engines.classic.peel import split_layer, unmix_alpha
from layerbridge.engines.classic.photo import photo_regions
from layerbridge.engines.classic.regions import (
    MIN_AREA,
    Element,
    element_of,
    is_mix,
    is_thin,
    link_components,
    rewindow,
)
from layerbridge.engines.classic.stack import apply_input_alpha
from layerbridge.engines.classic.strokes import attach, faint_strokes, glyph_remnants

Progress = Callable[[float, str], None]
Check = Callable[[], None]

#: Colours a transparent surround may be given: the one farthest from the visible ones.
KEY_COLORS = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0],
                       [0, 1, 1], [1, 0, 0], [0.5, 0.5, 0.5]], np.float64)
#: Components whose colour varies more than this (std) are textures, not flat fills.
FLAT_STD = 0.03
#: Above this many elements (each component inside a photo counted) a design is taken in
#: blocks of elements close together: taken one by one, the glyphs of paragraphs and the
#: parts of screenshots came out as a stack deeper than the design's, and as one layer for
#: the whole image (the photo path, as before) the design had no layers at all.
MAX_ELEMENTS = 400
_BAND = 2
#: How closely (max channel) a colour must match a black or white veil over its plate.
VEIL_TOL = 0.012
#: How closely (max channel) a pixel in an element's band must be a mix of the element's
#: colour and the plate to belong to the element.
UNMIX_TOL = 0.03
#: Share of the ring around an element, within a lower shape's hull, that the shape must
#: cover to go on under the element (a frame's hole shows the page, not the frame).
COVER_SHARE = 0.5
#: Below this difference (max channel) from its plate a pixel is the plate.
PLATE_TOL = 2.5 / 255


@dataclass
class Scene:
    """What the analysis found: the background field (None for photos) and the elements."""

    background: Background | None
    elements: list[Element]  # bottom first
    soft_alpha: dict[int, np.ndarray]  # element index -> box-sized alpha (photo subjects)
    #: element index -> full-frame mask of plate pixels filled with it (amodal extension)
    hidden: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class Piece:
    """One output layer: float RGBA ``pixels`` over ``box`` (y0, y1, x0, x1) of the document.

    Outside its box a layer is transparent; layers are kept this small so that a document
    of many elements does not hold a full frame per element."""

    name: str
    box: tuple[int, int, int, int]
    pixels: np.ndarray

    def full(self, height: int, width: int) -> np.ndarray:
        """The layer as a full (height, width, 4) frame, transparent outside its box."""
        return rewindow(self.pixels, self.box, (0, height, 0, width))


def decompose(
    rgba: np.ndarray,
    layers: int | str = "auto",
    progress: Progress | None = None,
    check: Check | None = None,
) -> list[tuple[str, np.ndarray]]:
    """Decompose uint8 RGBA (h, w, 4) into named full-frame float RGBA layers, bottom first."""
    h, w = rgba.shape[:2]
    return [(p.name, p.full(h, w)) for p in decompose_pieces(rgba, layers, progress, check)]


def decompose_pieces(
    rgba: np.ndarray,
    layers: int | str = "auto",
    progress: Progress | None = None,
    check: Check | None = None,
) -> list[Piece]:
    """Decompose uint8 RGBA (h, w, 4) into layers, each over its own box, bottom first."""
    progress = progress or (lambda fraction, stage: None)
    check = check or (lambda: None)
    h, w = rgba.shape[:2]
    rgb, surround = _opaque_rgb(rgba)
    if layers == 1 or min(rgb.shape[:2]) < 4:
        out = [Piece("image", (0, h, 0, w), np.concatenate([rgb, np.ones((h, w, 1))], -1))]
    else:
        scene = analyse(rgb, progress, check)
        if isinstance(layers, int):
            scene.elements = merge_to_count(scene.elements, layers - 1, h, w)
        else:
            scene.elements = merge_alike(scene.elements, h, w)
        out = peel_all(rgb, scene, progress, check)
    del rgb
    progress(0.97, "alpha")
    apply_input_alpha([(p.box, p.pixels) for p in out], rgba, surround)
    return out


def _opaque_rgb(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Float RGB with fully transparent pixels given one flat colour that no visible pixel
    is near: a transparent surround is then a flat background like any other, and what
    stands on it comes apart from it. (Filled from their surroundings, as before, the
    surround took the colours of the elements and the whole image went to the photo path.)
    Also returns that colour (None when every pixel is visible)."""
    rgb = rgba[..., :3].astype(np.float64) / 255.0
    known = rgba[..., 3] > 0
    if known.all():
        return rgb, None
    if not known.any():
        return np.zeros_like(rgb), None
    key = _key_color(rgb[known])
    rgb[~known] = key
    return rgb, key


def _key_color(visible: np.ndarray) -> np.ndarray:
    """Of a few plain colours, the one farthest (max channel) from every visible colour."""
    step = max(1, len(visible) // 20000)
    sample = visible[::step]
    best, best_gap = KEY_COLORS[0], -1.0
    for key in KEY_COLORS:
        gap = float(np.abs(sample - key).max(-1).min())
        if gap > best_gap:
            best, best_gap = key, gap
    return best


def analyse(rgb: np.ndarray, progress: Progress, check: Check) -> Scene:
    """Background field, elements and their z-order."""
    rgb8 = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    progress(0.05, "regions")
    comp = link_components(rgb8)
    check()
    progress(0.15, "background")
    bg = fit_background(rgb, comp.labels == _largest_border_label(comp.labels, comp.area),
                        np.random.default_rng(0))
    found = None
    if bg.ok:
        is_bg = background_mask(rgb, bg)
        # Relabel with background/foreground cut apart, so a panel a few levels off the
        # background does not leak into it through a soft shadow.
        comp = link_components(rgb8, is_bg)
        in_photo, photos = photo_regions(comp, is_bg)
        found = _flat_elements(comp, rgb, is_bg, check, in_photo)
        if found is not None:
            found[0].extend(photos)
    if found is None and bg.ok:
        # Too many elements for a flat design taken one by one (screenshots, paragraphs of
        # small text): its foreground in blocks, each a group of elements close together.
        return Scene(bg, photo.blocks(is_bg, rgb), {})
    if found is None:
        return _photo_scene(rgb, rgb8, check)
    check()
    progress(0.3, "regions")
    elements = _group(*found, rgb, is_bg, bg, check)
    check()
    progress(0.4, "order")
    return Scene(bg, join_clipped(z_order(elements, rgb.shape[:2])), {})


def _group(elements: list[Element], thin: set[int], rgb: np.ndarray, is_bg: np.ndarray,
           bg: Background, check: Check) -> list[Element]:
    """Components into elements: text lines, shapes whole again, faint strokes found."""
    h = rgb.shape[0]
    elements = text_lines(elements, h)
    # A thin piece that joined no text line is a seam after all: drop it.
    elements = [e for e in elements if e.kind == "text" or not set(e.members) <= thin]
    elements = absorb_pieces(elements)
    check()
    strokes = text_lines(faint_strokes(elements, rgb, is_bg), h)
    check()
    elements = glyph_remnants(attach(strokes, elements), rgb, is_bg, bg, check)
    check()
    # Strokes and remnants may be the thin parts of a line found in pieces: join it again.
    return join_specks(absorb_pieces(text_lines(elements, h)))


def _largest_border_label(labels: np.ndarray, area: np.ndarray) -> int:
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return int(border[np.argmax(area[border])])


def _flat_elements(comp, rgb: np.ndarray, is_bg: np.ndarray, check: Check,
                   skip: np.ndarray) -> tuple[list[Element], set[int]] | None:
    """One element per component that is big enough, not a seam, not background, and not
    ``skip``-ped (per label: inside a photo, which is one element of its own); None when
    there are more than MAX_ELEMENTS such components, skipped ones included (a photo).

    Also returns the labels of the thin ones kept: small text has strokes two pixels wide
    that look like seams, but their colour is no blend of their neighbours'; they are kept
    only if they join a text line.
    """
    bg_share = np.bincount(comp.labels.ravel(), is_bg.ravel(), comp.count + 1)
    bg_share /= np.maximum(comp.area, 1)
    out, thin, seen = [], set(), 0
    wanted = (comp.area >= MIN_AREA) & (bg_share < 0.5)
    wanted[0] = False
    for label in np.flatnonzero(wanted):
        if seen % 64 == 63:
            check()
        if is_thin(comp, int(label)):
            if is_mix(comp, int(label), rgb):
                continue
            if not skip[label]:
                thin.add(int(label))
        seen += 1
        if seen > MAX_ELEMENTS:
            return None
        if not skip[label]:
            out.append(element_of(comp, int(label), FLAT_STD))
    return out, thin


def _photo_scene(rgb: np.ndarray, rgb8: np.ndarray, check: Check) -> Scene:
    mask = photo.subject_mask(rgb8)
    if mask is None:
        return Scene(None, [], {})
    subject = photo.subject_element(mask)
    y0, y1, x0, x1 = subject.box
    full = photo.matte(rgb, mask, check)
    return Scene(None, [subject], {0: full[y0:y1, x0:x1]})


def peel_all(rgb: np.ndarray, scene: Scene, progress: Progress, check: Check) -> list[Piece]:
    """Peel elements top down; return the layers bottom first, background first."""
    h, w = rgb.shape[:2]
    image = rgb.copy()
    hulls = _shapes(scene.elements, h, w)
    peeled: list[Piece] = []
    n = len(scene.elements)
    numbers = _numbers_by_kind(scene.elements)
    for k in range(n - 1, -1, -1):
        check()
        progress(0.45 + 0.5 * (n - 1 - k) / max(n, 1), "peel")
        box, layer = _peel_one(image, scene, k, hulls)
        peeled.append(Piece(layer_name(scene.elements[k], numbers[k]), box, layer))
    progress(0.95, "fill")
    base = np.concatenate([image, np.ones((h, w, 1))], -1)
    del image
    base[..., :3] = np.rint(base[..., :3] * 255) / 255
    return [Piece("background", (0, h, 0, w), base), *peeled[::-1]]


def _numbers_by_kind(elements: list[Element]) -> list[int]:
    """Each element's number among those of its kind, bottom up: Text 1, Text 2, Shape 1."""
    seen: dict[str, int] = {}
    numbers = []
    for e in elements:
        seen[e.kind] = seen.get(e.kind, 0) + 1
        numbers.append(seen[e.kind])
    return numbers


def _shapes(elements: list[Element], h: int, w: int):
    """(mask, box) per element: its shape completed under the elements above it where it is
    a hidden rectangle or ellipse, else its convex hull."""
    out = [(hull_mask(e), e.box) for e in elements]
    cover = np.zeros((h, w), bool)
    for j in range(len(elements) - 1, -1, -1):
        e = elements[j]
        whole = complete(e, cover) if cover.any() else None
        if whole is not None:
            out[j] = whole
        y0, y1, x0, x1 = e.box
        cover[y0:y1, x0:x1] |= e.mask
    return out


def _peel_one(image: np.ndarray, scene: Scene, k: int, hulls
              ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Peel element ``k`` off ``image`` in place; return its box and float RGBA layer there."""
    h, w = image.shape[:2]
    e = scene.elements[k]
    # The completed shape's box: an element that continues under the ones above it
    # reaches past its visible part.
    whole = hulls[k][1]
    y0, y1 = max(min(e.box[0], whole[0]) - _BAND, 0), min(max(e.box[1], whole[1]) + _BAND, h)
    x0, x1 = max(min(e.box[2], whole[2]) - _BAND, 0), min(max(e.box[3], whole[3]) + _BAND, w)
    box = (y0, y1, x0, x1)
    core = rewindow(e.mask, e.box, box)
    if k in scene.hidden:
        # The plate under upper elements was filled with this element's colour: it continues
        # there, so its layer covers it (a whole shape, not only its visible part).
        core |= scene.hidden[k][y0:y1, x0:x1]
    kernel = np.ones((2 * _BAND + 1, 2 * _BAND + 1), np.uint8)
    region = cv2.dilate(core.astype(np.uint8), kernel).astype(bool)
    lower = _lower_covers(scene, k, hulls, box, core)
    region &= ~lower[1] | core
    plate, claims = fill_plate(image, region, box, [c[:2] for c in lower[0]], scene.background)
    for (_, color, j), take in zip(lower[0], claims, strict=True):
        if color is not None and take.any():
            scene.hidden.setdefault(j, np.zeros((h, w), bool))[y0:y1, x0:x1] |= take
    crop = image[y0:y1, x0:x1]
    # Panels running off the canvas and text are taken as opaque: grey on grey is more
    # often an opaque fill than a veil, except for a label box floating over the page.
    border = e.box[0] == 0 or e.box[2] == 0 or e.box[1] == h or e.box[3] == w
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
    region &= core | (np.abs(crop - plate).max(-1) > PLATE_TOL)
    if color is not None:
        # The band around the element may hold the anti-aliased rim of a lower element
        # that only meets it: no mix of this colour over the plate, so not this layer's.
        region &= core | _explained(crop, plate, alpha, color)
    alpha[~region] = 0.0
    plate[~region] = crop[~region]
    layer, under = split_layer(crop, plate, alpha, color)
    image[y0:y1, x0:x1] = under
    return box, layer


def _explained(image: np.ndarray, plate: np.ndarray, alpha: np.ndarray, color: np.ndarray
               ) -> np.ndarray:
    """Pixels that ``color`` at ``alpha`` over ``plate`` reproduces to within UNMIX_TOL."""
    mix = plate + alpha[..., None] * (color - plate)
    return np.abs(image - mix).max(-1) <= UNMIX_TOL


def _veil(under: np.ndarray, color: np.ndarray | None) -> np.ndarray | None:
    """Black or white if the flat ``color`` is exactly that laid at part opacity over the
    flat plate ``under`` it (a scrim or a translucent label), else None."""
    if color is None or len(under) < MIN_AREA:
        return None
    plate = under.mean(0)
    if np.abs(under - plate).max(-1).mean() > VEIL_TOL:
        return None
    for extreme in (np.zeros(3), np.ones(3)):
        d = extreme - plate
        norm = float(d @ d)
        if norm < 0.05:
            continue
        a = float((color - plate) @ d) / norm
        if 0.1 <= a <= 0.9 and np.abs(plate + a * d - color).max() <= VEIL_TOL:
            return extreme
    return None


def _element_alpha(crop, plate, core, e: Element, soft, box) -> np.ndarray:
    if soft is not None:
        return rewindow(soft, e.box, box)
    if e.color is None:
        return core.astype(np.float64)
    alpha = unmix_alpha(crop, plate, e.color)
    if not e.unmixed:
        alpha[core] = 1.0
    return alpha


def _lower_covers(scene: Scene, k: int, hulls, box, core: np.ndarray):
    """(hull, colour) of lower elements over ``box``, topmost first, and their cores.

    Only a shape that runs along the element's outline, where its hull reaches, goes on
    under it: a line of text (its hull is no shape) or a frame around it (the element lies
    in its hole, the page shows between them) does not."""
    covers = []
    cores = np.zeros((box[1] - box[0], box[3] - box[2]), bool)
    near = cv2.dilate(core.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    ring = near & ~cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    for j in range(k - 1, -1, -1):
        e = scene.elements[j]
        sb = hulls[j][1]
        if not (sb[0] < box[1] and box[0] < sb[1] and sb[2] < box[3] and box[2] < sb[3]):
            continue
        mask = rewindow(e.mask, e.box, box)
        cores |= mask
        hull = rewindow(hulls[j][0], hulls[j][1], box)
        if e.kind == "text" or (mask & ring).sum() < COVER_SHARE * (hull & ring).sum():
            continue
        covers.append((hull, e.color, j))
    return covers, cores
