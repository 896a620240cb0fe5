"""The classic decomposition, start to end: a list of named stages, each ``Scene -> Scene``.

    1. regions     the input as opaque colour, split into linked flat-colour components
    2. background  the background field; the components into elements, text of the
                   background's colour inlaid in a shape among them (or, for a design of
                   too many elements, blocks of them; for a photo, the text over it
                   and its subject)
    3. text        glyphs into text lines (a title's tall words into one line), shapes
                   whole again, faint strokes found; what is left of a background
                   gradient given back to the background
    4. order       the elements' z-order; clipped content into its container
    5. merge       the parts of one thing together (or the most alike, to the count asked)
    6. peel        each element peeled off the image top down into its layer
    7. fill        what is left under them all: the background layer
    8. seams       an element's edge left in the background given back to it; the rim
                   two touching layers both took given to one of them
    9. alpha       the input's own transparency pushed into the layers

:func:`run_stages` runs them, reporting progress from their weights (the stage names are
what the server reports) and asking for a cancel between them. ``decompose`` is host-free
(numpy in, float RGBA layers out) so tests and benchmarks call it directly; the engine wraps
it with the job protocol. Every threshold is in tuning.py.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from layerbridge.engines.classic import photo
from layerbridge.engines.classic.background import background_mask, fit_background
from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.clipping import join_clipped
from layerbridge.engines.classic.color import color_distance
from layerbridge.engines.classic.ghosts import give_back_ghosts
from layerbridge.engines.classic.grouping import absorb_pieces, join_codes
from layerbridge.engines.classic.merging import merge_alike, merge_to_count
from layerbridge.engines.classic.order import z_order
from layerbridge.engines.classic.peel import peel_elements
from layerbridge.engines.classic.regions import (
    Element,
    borders,
    element_of,
    inlays,
    is_mix,
    is_thin,
    link_components,
)
from layerbridge.engines.classic.rims import separate_rims
from layerbridge.engines.classic.scene import Check, Piece, Progress, Scene
from layerbridge.engines.classic.stack import apply_input_alpha
from layerbridge.engines.classic.text import (
    attach,
    block_inks,
    drop_enclosed_specks,
    faint_strokes,
    glyph_remnants,
    join_specks,
    lines_over_photo,
    text_lines,
    title_lines,
)
from layerbridge.engines.classic.tuning import TUNING

__all__ = ["STAGES", "Piece", "Scene", "Stage", "decompose", "decompose_pieces", "run_stages"]

#: Colours a transparent surround may be given: the one farthest from the visible ones.
KEY_COLORS = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0],
                       [0, 1, 1], [1, 0, 0], [0.5, 0.5, 0.5]], np.float64)


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
    return run_stages(Scene(rgba, layers), progress, check).pieces


# --- 1. regions ---------------------------------------------------------------------------


def find_regions(scene: Scene) -> Scene:
    """The input as opaque float RGB and its linked components; a document asked for one
    layer, or too small to hold any, is taken whole."""
    scene.rgb, scene.surround = _opaque_rgb(scene.rgba)
    if scene.layers == 1 or min(scene.frame) < 4:
        scene.path = "whole"
        return scene
    scene.rgb8 = np.clip(np.rint(scene.rgb * 255), 0, 255).astype(np.uint8)
    scene.components = link_components(scene.rgb8)
    return scene


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
        gap = float(color_distance(sample, key).min())
        if gap > best_gap:
            best, best_gap = key, gap
    return best


# --- 2. background ------------------------------------------------------------------------


def find_background(scene: Scene) -> Scene:
    """The background field, and the components that are not background as elements: a
    design of flat elements one by one (photos placed in it one element each), a design of
    too many elements in blocks, and an image with no background field as a photo."""
    if scene.path == "whole":
        return scene
    rgb, rgb8, comp = scene.rgb, scene.rgb8, scene.components
    assert rgb is not None and rgb8 is not None and comp is not None
    seed = _largest_border_label(comp.labels, comp.area)
    bg = fit_background(rgb, comp.labels == seed, np.random.default_rng(0))
    # A seed of a few pixels fits any field: the grain of a full-bleed photo, no page.
    if not bg.ok or comp.area[seed] < TUNING.min_seed_share * comp.labels.size:
        return _photo_scene(scene)
    scene.background = bg
    # The input's transparent pixels are nothing, whatever the field: the transparent
    # corners of a rounded icon whose tile is the background are no shapes of their own.
    is_bg = scene.is_background = background_mask(rgb, bg) | (scene.rgba[..., 3] == 0)
    # Relabel with background/foreground cut apart, so a panel a few levels off the
    # background does not leak into it through a soft shadow.
    comp = scene.components = link_components(rgb8, is_bg)
    in_photo, photos = photo.photo_regions(comp, is_bg)
    found = _flat_elements(comp, rgb, is_bg, scene.check, in_photo)
    if found is None:
        # Too many elements for a flat design taken one by one (screenshots, paragraphs of
        # small text): its foreground in blocks.
        return _in_blocks(scene)
    elements, scene.thin = found
    scene.elements = elements + photos
    return scene


def _in_blocks(scene: Scene) -> Scene:
    """The design's foreground in blocks, each a group of elements close together (the
    paragraphs and panels of a screenshot). (Text inlaid in a block, as a layer over it, was
    tried: 0.575 -> 0.763 at 0 merges on one page of paragraphs, 0.955 -> 0.629 at 2 on
    another.)"""
    assert scene.rgb is not None and scene.is_background is not None
    assert scene.components is not None
    scene.path = "blocks"
    scene.elements = photo.blocks(scene.is_background, scene.rgb)
    if len(scene.elements) == 1:
        # One block is no decomposition: if it is a panel, its content is the next level.
        scene.elements = photo.opened(scene.elements[0], scene.components, scene.rgb)
    return scene


def _background_residue(element: Element, rgb: np.ndarray, is_bg: np.ndarray) -> bool:
    """Whether ``element`` is part of a background gradient the field did not fit: it
    reaches the image's edge and meets the background nowhere in a step (its colour runs
    on across the boundary, which a shape's anti-aliased edge never does)."""
    h, w = is_bg.shape
    box = element.box
    if box.y0 > 0 and box.x0 > 0 and box.y1 < h and box.x1 < w:
        return False
    around = box.grow(1, (h, w))
    own = np.zeros((around.height, around.width), np.uint8)
    own[box.within(around)] = element.mask
    kernel = np.ones((3, 3), np.uint8)
    outer = cv2.dilate(own, kernel).astype(bool) & ~own.astype(bool) & is_bg[around.slices]
    if outer.sum() < TUNING.min_area:
        return False
    inner = own.astype(bool) & cv2.dilate(outer.astype(np.uint8), kernel).astype(bool)
    crop = rgb[around.slices]
    step = np.abs(crop[inner].mean(0) - crop[outer].mean(0)).max()
    return bool(step <= TUNING.residue_step)


def _largest_border_label(labels: np.ndarray, area: np.ndarray) -> int:
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return int(border[np.argmax(area[border])])


def _flat_elements(comp, rgb: np.ndarray, is_bg: np.ndarray, check: Check,
                   skip: np.ndarray) -> tuple[list[Element], set[int]] | None:
    """One element per component that is big enough, not a seam, not background (except
    text of the background's colour inlaid in a shape), and not ``skip``-ped (per label:
    inside a photo, which is one element of its own); None when there are more than
    TUNING.max_elements such components, skipped ones included (a photo).

    Also returns the labels of the thin ones kept: small text has strokes two pixels wide
    that look like seams, but their colour is no blend of their neighbours'; they are kept
    only if they join a text line. A seam of about a flat shape's colour along it is the
    shape's border and part of it: dropped as a blend, it stayed on the page as an outline.
    """
    out, thin, seen = [], set(), 0
    wanted = _element_labels(comp, is_bg)
    inlaid = _inlaid_text(comp, wanted, (comp.area >= TUNING.min_area) & ~wanted,
                          rgb.shape[:2])
    wanted[[label for line in inlaid for label in line.members]] = True
    seams: list[int] = []
    index: dict[int, int] = {}  # label -> its element in out
    for label in np.flatnonzero(wanted):
        if seen % 64 == 63:
            check()
        if is_thin(comp, int(label)):
            seams.append(int(label))
            continue
        seen += 1
        if seen > TUNING.max_elements:
            return None
        if not skip[label]:
            index[int(label)] = len(out)
            out.append(element_of(comp, int(label), TUNING.flat_std))
    mixes = {seam for seam in seams if is_mix(comp, seam, rgb)}
    others = wanted.copy()  # what may keep a seam from being a shape's border
    others[list(mixes)] = False
    joined = _join_borders(comp, out, index, [s for s in seams if not skip[s]], others)
    for seam in seams:
        if seam in mixes or seam in joined:
            continue
        seen += 1
        if seen > TUNING.max_elements:
            return None
        if not skip[seam]:
            thin.add(seam)
            out.append(element_of(comp, seam, TUNING.flat_std))
    return out, thin


def _join_borders(comp, out: list[Element], index: dict[int, int],
                  seams: list[int], others: np.ndarray) -> dict[int, int]:
    """Join to the flat shapes in ``out`` (``index``: label -> element) the ``seams`` that
    are their borders (see regions.borders); return seam label -> shape label."""
    shapes = np.zeros(comp.count + 1, np.int64)
    flat = [label for label, k in index.items() if out[k].color is not None]
    shapes[flat] = flat
    owner = borders(comp, seams, shapes, others)
    by_shape: dict[int, list[int]] = {}
    for seam, label in owner.items():
        by_shape.setdefault(index[label], []).append(seam)
    for k, labels in by_shape.items():
        box = out[k].box
        for seam in labels:
            box = box.union(comp.boxes[seam])
        mask = np.isin(comp.labels[box.slices], [*out[k].members, *labels])
        out[k] = Element(box, mask, out[k].color, out[k].kind, out[k].members + labels)
    return owner


def _element_labels(comp, is_bg: np.ndarray) -> np.ndarray:
    """Per label, whether the component may be an element: big enough, and not mostly
    background."""
    bg_share = np.bincount(comp.labels.ravel(), is_bg.ravel(), comp.count + 1)
    bg_share /= np.maximum(comp.area, 1)
    wanted = (comp.area >= TUNING.min_area) & (bg_share < TUNING.max_background_share)
    wanted[0] = False
    return wanted


def _inlaid_text(comp, hosts: np.ndarray, candidates: np.ndarray, frame: tuple[int, int]
                 ) -> list[Element]:
    """Background-coloured text inlaid in a solid shape (a white label on a dark button),
    as text lines: the ``candidates`` in the holes of one of the ``hosts`` that join lines
    of at least TUNING.inlay_min_count glyphs. An icon's cut-outs are no text line and stay
    holes through it."""
    parts = [element_of(comp, label, TUNING.flat_std) for label in inlays(comp, hosts, candidates)]
    return [line for line in text_lines(parts, frame)
            if line.kind == "text" and len(line.members) >= TUNING.inlay_min_count]


def _photo_scene(scene: Scene) -> Scene:
    """No background field: the image is a photo, the lines of text laid over it one
    element each, and its subject, less that text, one element under them (if found)."""
    assert scene.rgb is not None and scene.rgb8 is not None and scene.components is not None
    scene.path = "photo"
    # GrabCut holds no GIL: the subject is cut while the text over the photo is found.
    with ThreadPoolExecutor(1) as pool:
        cutting = pool.submit(photo.subject_mask, scene.rgb8)
        lines = lines_over_photo(scene.components, scene.rgb)
        mask = cutting.result()
    if mask is not None and lines:
        mask = photo.without(mask, lines)
    if mask is None:
        scene.elements = lines
        return scene
    subject = photo.subject_element(mask)
    full = photo.matte(scene.rgb, mask, scene.check)
    scene.elements, scene.soft_alpha = [subject, *lines], {0: full[subject.box.slices]}
    return scene


# --- 3. text ------------------------------------------------------------------------------


def find_text(scene: Scene) -> Scene:
    """Components into elements: text lines, shapes whole again, faint strokes found, and
    what is left of a background gradient the field did not fit given back to it; a design
    that makes more than ``TUNING.max_layers`` of them in blocks instead."""
    if scene.path == "design":
        scene.elements = _design_elements(scene)
        if len(scene.elements) > TUNING.max_layers:
            scene = _in_blocks(scene)
    if scene.path == "blocks":
        rgb, bg = scene.rgb, scene.background
        assert rgb is not None and bg is not None
        frame = rgb.shape[:2]
        scene.elements = text_lines(block_inks(scene.elements, rgb, bg, frame), frame)
    return scene


def _design_elements(scene: Scene) -> list[Element]:
    """A design's components, one by one, into its elements (see find_text)."""
    rgb, is_bg, bg = scene.rgb, scene.is_background, scene.background
    assert rgb is not None and is_bg is not None and bg is not None
    frame = rgb.shape[:2]
    elements = text_lines(scene.elements, frame)
    # A thin piece that joined no text line is a seam after all: drop it.
    elements = [e for e in elements if e.kind == "text" or not set(e.members) <= scene.thin]
    elements = absorb_pieces(elements)
    scene.check()
    strokes = text_lines(faint_strokes(elements, rgb, is_bg), frame)
    scene.check()
    elements = glyph_remnants(attach(strokes, elements), rgb, is_bg, bg, scene.check)
    scene.check()
    # Strokes and remnants may be the thin parts of a line found in pieces: join it again.
    elements = drop_enclosed_specks(join_specks(absorb_pieces(text_lines(elements, frame))))
    # A title's words, too tall for glyphs, are text lines of their own: one line again.
    elements = title_lines(elements, frame)
    # A code's modules are no text over its square: one element with it.
    assert scene.rgb8 is not None
    elements = join_codes(elements, scene.rgb8)
    # Last, when the residue of a background gradient has taken in its specks: all of it
    # stays in the background.
    return [e for e in elements if not _background_residue(e, rgb, is_bg)]


# --- 4. order -----------------------------------------------------------------------------


def order_elements(scene: Scene) -> Scene:
    """The elements bottom first; a shape clipped by its container joins it."""
    if scene.path == "design":
        scene.elements = join_clipped(z_order(scene.elements, scene.frame,
                                              scene.is_background))
    return scene


# --- 5. merge -----------------------------------------------------------------------------


def merge_elements(scene: Scene) -> Scene:
    """To the count asked for (the background is one of them), or the parts of one thing."""
    if scene.path == "whole":
        return scene
    h, w = scene.frame
    if isinstance(scene.layers, int):
        scene.elements = merge_to_count(scene.elements, scene.layers - 1, h, w)
    else:
        scene.elements = merge_alike(scene.elements, h, w)
    return scene


# --- 6. peel ------------------------------------------------------------------------------


def peel(scene: Scene) -> Scene:
    """Each element peeled off the image top down into its layer (peel.py)."""
    # The analysis is done: its frames go before the peel's own.
    scene.rgb8 = scene.components = scene.is_background = None
    if scene.path == "whole":
        return scene
    scene.plate, scene.pieces = peel_elements(scene)
    return scene


# --- 7. fill ------------------------------------------------------------------------------


def fill(scene: Scene) -> Scene:
    """The bottom layer: what is left under every element (the whole image, taken whole)."""
    assert scene.rgb is not None
    h, w = scene.frame
    frame = Box.of_frame(h, w)
    if scene.path == "whole":
        whole = np.concatenate([scene.rgb, np.ones((h, w, 1))], -1)
        scene.rgb = None
        scene.pieces = [Piece("image", frame, whole)]
        return scene
    assert scene.plate is not None
    scene.rgb = None
    base = np.concatenate([scene.plate, np.ones((h, w, 1))], -1)
    scene.plate = None
    base[..., :3] = np.rint(base[..., :3] * 255) / 255
    scene.pieces = [Piece("background", frame, base), *scene.pieces]
    return scene


# --- 8. seams -----------------------------------------------------------------------------


def separate_seams(scene: Scene) -> Scene:
    """Where two layers meet edge to edge, peeled one by one they both took part of the
    anti-aliased seam: each seam pixel goes to one of them (rims.py), the composite the same.
    An overlap, however thin, puts one layer over the other: a stack deeper than the
    design's. Before that, an element's edge the peel left in the background goes back to
    the element (ghosts.py)."""
    if scene.path != "whole":
        give_back_ghosts(scene.pieces, scene.background, scene.rgba[..., 3] == 255,
                         scene.surround)
    separate_rims(scene.pieces)
    return scene


# --- 9. alpha -----------------------------------------------------------------------------


def input_alpha(scene: Scene) -> Scene:
    """The input's own transparency pushed into the layers (stack.py), in place."""
    apply_input_alpha([(p.box, p.pixels) for p in scene.pieces], scene.rgba, scene.surround)
    return scene


# --- the pipeline -------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: its name (the progress stage the server reports), its
    share of the job's time, and what it does."""

    name: str
    weight: float
    run: Callable[[Scene], Scene]


STAGES: tuple[Stage, ...] = (
    Stage("regions", 0.15, find_regions),
    Stage("background", 0.15, find_background),
    Stage("text", 0.10, find_text),
    Stage("order", 0.05, order_elements),
    Stage("merge", 0.00, merge_elements),
    Stage("peel", 0.50, peel),
    Stage("fill", 0.02, fill),
    Stage("seams", 0.02, separate_seams),
    Stage("alpha", 0.03, input_alpha),
)


def run_stages(scene: Scene, progress: Progress | None = None, check: Check | None = None,
               stages: tuple[Stage, ...] = STAGES) -> Scene:
    """Run ``stages`` in turn on ``scene``: each reports its start, and its progress within,
    as a share of the whole from the weights; ``check`` is asked between stages (and by the
    long ones inside)."""
    report = progress or (lambda fraction, stage: None)
    scene.check = check or (lambda: None)
    total = sum(s.weight for s in stages) or 1.0
    done = 0.0
    for stage in stages:
        scene.check()
        start, share = done / total, stage.weight / total
        report(start, stage.name)
        scene.progress = lambda within, s=start, k=share, n=stage.name: report(s + k * within, n)
        scene = stage.run(scene)
        done += stage.weight
    return scene
