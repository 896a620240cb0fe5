"""Photos: a photo placed in a design is one layer; an image that is all photo gets a
subject cut-out.

A photo inside a design is a part of the foreground (what the background field does not
explain) made largely of specks: components too small to be anything, since colour varies
from pixel to pixel. Flat designs have specks only along anti-aliased edges.

Photo path: for images that are not flat designs.

Few flat pixels and no background field: the lines of text laid over the photo are found
first (text.lines_over_photo), a layer each. The subject, less that text, is found by
GrabCut on a small proxy (<= 320 px), seeded by a centre rectangle, then its edge is refined
by closed-form matting (pymatting) on a narrow band at full size when pymatting is installed.
This is the weakest path: the cut-out is usable, the plate under a large subject is blurry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.regions import Components, Element, owner_map
from layerbridge.engines.classic.tuning import TUNING


def subject_mask(rgb8: np.ndarray) -> np.ndarray | None:
    """Boolean subject mask at full size, or None when GrabCut finds nothing sensible."""
    h, w = rgb8.shape[:2]
    if min(h, w) < 16:
        return None
    scale = min(1.0, TUNING.subject_proxy / max(h, w))
    small = cv2.resize(rgb8, (max(int(w * scale), 8), max(int(h * scale), 8)),
                       interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    rect = (int(sw * 0.1), int(sh * 0.1), max(int(sw * 0.8), 1), max(int(sh * 0.8), 1))
    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, rect, bgd, fgd,
                TUNING.subject_rounds, cv2.GC_INIT_WITH_RECT)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    share = fg.mean()
    if share < TUNING.subject_min_share or share > TUNING.subject_max_share:
        return None
    big = cv2.resize(fg * 255, (w, h), interpolation=cv2.INTER_LINEAR)
    return big >= 128


def matte(rgb: np.ndarray, mask: np.ndarray, check: Callable[[], None] = lambda: None
          ) -> np.ndarray:
    """Soft alpha for ``mask``: closed-form matting on a band around its edge, tile by tile.

    Closed-form matting holds about 1.3 KB per pixel it solves for (its Laplacian), and up
    to 3 KB more for the factors of its solve (in a tile that is all band), so it runs on
    tiles of the band (each with a margin of known pixels), never on the whole box: memory
    stays bounded at any size, and ``check`` is called between tiles. The tiles are solved
    on TUNING.matte_threads threads (the Laplacian's kernel and the factorisation release
    the GIL); each writes only its own part of the result, so the order they finish in does
    not matter."""
    alpha = mask.astype(np.float64)
    kernel = np.ones((2 * TUNING.matte_band + 1, 2 * TUNING.matte_band + 1), np.uint8)
    m8 = mask.astype(np.uint8)
    unknown = (cv2.dilate(m8, kernel) - cv2.erode(m8, kernel)).astype(bool)
    try:
        import pymatting  # noqa: F401
    except ImportError:
        return cv2.GaussianBlur(alpha, (0, 0), 1.0)
    with ThreadPoolExecutor(TUNING.matte_threads) as pool:
        solving = [(tile, pool.submit(_closed_form, rgb[tile.window.slices], hard, known))
                   for tile, hard, known in _matte_tiles(mask, unknown)]
        try:
            for tile, future in solving:
                check()
                part = future.result()[tile.inner.within(tile.window)]
                inner = unknown[tile.inner.slices]
                alpha[tile.inner.slices][inner] = part[inner]
        finally:
            for _, future in solving:
                future.cancel()
    return np.clip(alpha, 0.0, 1.0)


@dataclass(frozen=True)
class _Tile:
    """One tile of the band: the pixels it solves (``inner``) within its ``window``, which
    adds a margin of known pixels around them."""

    inner: Box
    window: Box


def _matte_tiles(mask: np.ndarray, unknown: np.ndarray
                 ) -> Iterator[tuple[_Tile, np.ndarray, np.ndarray]]:
    """(tile, hard mask, known pixels) of each tile that has unknown pixels and known ones
    on both sides of the edge (elsewhere the hard edge stays)."""
    h, w = mask.shape
    size, margin = TUNING.matte_tile, TUNING.matte_margin
    for ty in range(0, h, size):
        for tx in range(0, w, size):
            inner = Box(ty, min(ty + size, h), tx, min(tx + size, w))
            if not unknown[inner.slices].any():
                continue
            window = inner.grow(margin, (h, w))
            known = ~unknown[window.slices]
            hard = mask[window.slices]
            if (known & hard).any() and (known & ~hard).any():
                yield _Tile(inner, window), hard, known


def _closed_form(rgb: np.ndarray, hard: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Closed-form alpha (Levin et al.) of one tile: the unknown pixels solved against the
    known ones, by a sparse LU factorisation.

    The unknown pixels form a band a few pixels wide, so the factors fill in little and the
    exact solve costs less than an iterative one: pymatting's incomplete Cholesky
    preconditioner fails and retries where the edge crosses a flat stretch of colour, and
    conjugate gradients then crawl. The system is positive definite: every piece of the band
    meets known pixels, since a tile is solved only when it has some."""
    from pymatting import cf_laplacian
    from scipy.sparse.linalg import splu

    solve = ~known.ravel()
    cut = hard.ravel().astype(np.float64)
    rows = cf_laplacian(rgb, is_known=known)[solve]
    # Symmetric: ordered by minimum degree on A + A^T, pivots taken on the diagonal.
    factors = splu(rows[:, solve].tocsc(), permc_spec="MMD_AT_PLUS_A",
                   options={"SymmetricMode": True})
    alpha = cut.copy()
    alpha[solve] = factors.solve(-(rows[:, ~solve] @ cut[~solve]))
    return alpha.reshape(hard.shape)


def without(mask: np.ndarray, elements: list[Element]) -> np.ndarray | None:
    """``mask`` less the ``elements`` and their anti-aliased rims; None when what is left
    is too small to be a subject."""
    held = (owner_map(elements, mask.shape) > 0).astype(np.uint8)
    size = 2 * TUNING.peel_band + 1
    out = mask & ~cv2.dilate(held, np.ones((size, size), np.uint8)).astype(bool)
    # What is left between the lines of text is crumbs, not a subject.
    out = cv2.morphologyEx(out.astype(np.uint8), cv2.MORPH_OPEN,
                           np.ones((5, 5), np.uint8)).astype(bool)
    if out.mean() < TUNING.subject_min_share:
        return None
    return out


def subject_element(mask: np.ndarray) -> Element:
    ys, xs = np.nonzero(mask)
    box = Box(int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return Element(box, mask[box.slices].copy(), None, "texture")


def foreground_parts(is_bg: np.ndarray) -> tuple[int, np.ndarray]:
    """(count + 1, label image) of the connected parts of the foreground (0: background)."""
    return cv2.connectedComponents((~is_bg).astype(np.uint8), connectivity=8)


def part_element(regions: np.ndarray, index: int, window: tuple[slice, slice],
                 kind: str, origin: tuple[int, int] = (0, 0), fill: bool = True) -> Element:
    """One element covering foreground part ``index`` (in ``window`` of a crop whose corner
    is at ``origin``), holes filled unless ``fill`` is False: a photo's pixels that happen
    to match the background are still the photo."""
    mask = regions[window] == index
    if fill:
        mask = ndimage.binary_fill_holes(mask)
    return Element(Box.of_window(window, origin), mask, None, kind, [0])


def _block_reach(height: int, width: int) -> int:
    return max(2, round(TUNING.block_gap * max(height, width)))


def blocks(is_bg: np.ndarray, rgb: np.ndarray, reach: int | None = None,
           origin: tuple[int, int] = (0, 0)) -> list[Element]:
    """One element per block of the foreground: the parts of the foreground that lie
    within :data:`TUNING.block_gap` of the image's larger side (or ``reach`` pixels) of each
    other (the glyphs of a paragraph, the pieces of a screenshot), holes kept, largest
    first. ``is_bg`` and ``rgb`` may be a crop whose corner is at ``origin``."""
    h, w = is_bg.shape
    reach = reach or _block_reach(h, w)
    fg = (~is_bg).astype(np.uint8)
    near = cv2.dilate(fg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    count, regions = cv2.connectedComponents(near, connectivity=8)
    regions[fg == 0] = 0
    out = []
    for index, window in enumerate(ndimage.find_objects(regions), start=1):
        if window is None:
            continue
        # Not filled: a block is mostly glyphs, whose counters are the page showing
        # through (markitmedia 0.474 -> 0.557, and 0.683 -> 0.812 at 2 merges).
        e = part_element(regions, index, window, "group", origin, fill=False)
        if e.area >= TUNING.min_area:
            pixels = rgb[window][e.mask]
            if float(pixels.std(0).max()) <= TUNING.block_flat:
                e.color, e.kind = pixels.mean(0), "shape"
            out.append(e)
    return sorted(out, key=lambda e: -e.area)


def opened(block: Element, comp: Components, rgb: np.ndarray) -> list[Element]:
    """A block that is a panel holding content (a card with text and buttons on it) as the
    panel, whole, with its content's own blocks over it; else ``[block]``. A panel is a flat
    component that, holes filled, covers TUNING.panel_share of the block."""
    labels = comp.labels[block.box.slices]
    inside, count = np.unique(labels[block.mask], return_counts=True)
    flat = comp.std[inside] <= TUNING.flat_std
    if not flat.any():
        return [block]
    host = int(inside[flat][np.argmax(count[flat])])
    filled = ndimage.binary_fill_holes(labels == host)
    if filled.sum() < TUNING.panel_share * block.area:
        return [block]
    # Content lies inside the panel, clear of its anti-aliased rim.
    inner = cv2.erode(filled.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    content = inner & (labels != host)
    if content.sum() < TUNING.min_area:
        return [block]
    panel = Element(block.box, filled | (block.mask & ~content), comp.mean[host].copy(),
                    "shape", [host])
    h, w = comp.labels.shape
    origin = (block.box.y0, block.box.x0)
    return [panel, *blocks(~content, rgb[block.box.slices], _block_reach(h, w), origin)]


def photo_regions(comp: Components, is_bg: np.ndarray) -> tuple[np.ndarray, list[Element]]:
    """(per component label: inside a photo, one element per photo) of a design.

    A photo is a connected part of the foreground of which at least :data:`TUNING.photo_specks`
    of the pixels are specks, or, within a part that is mostly flat (a photo on a card), a
    dense cluster of specks of many colours (:func:`_speck_clusters`)."""
    count, regions = foreground_parts(is_bg)
    flat = regions.ravel()
    speck = (comp.area < TUNING.min_area)[comp.labels]
    area = np.bincount(flat, minlength=count)
    specks = np.bincount(flat, speck.ravel(), minlength=count)
    region_of = np.zeros(comp.count + 1, np.int64)
    region_of[comp.labels.ravel()] = flat
    parts = np.bincount(region_of, minlength=count)
    photo = ((area >= TUNING.photo_min_area) & (specks >= TUNING.photo_specks * area)
             & (parts >= TUNING.photo_min_parts))
    photo[0] = False
    elements = []
    for index, window in enumerate(ndimage.find_objects(regions), start=1):
        if window is not None and photo[index]:
            elements.append(part_element(regions, index, window, "photo"))
    inside = photo[region_of]
    clustered, members = _speck_clusters(comp, speck & ~is_bg & ~photo[regions], is_bg)
    return inside | members, elements + clustered


def _speck_clusters(comp: Components, specks: np.ndarray, is_bg: np.ndarray
                    ) -> tuple[list[Element], np.ndarray]:
    """(one element per photo, per label: inside one) among ``specks`` (full-frame mask).

    A photo on a card is one foreground part with the card, whose flat pixels outnumber the
    photo's specks. Closing the speck mask finds it: a cluster mostly of specks (not the
    anti-aliased rim of a shape or a glyph, which a closing only thickens), holding many
    colours (not a halftone or a line of small text, whose specks are a few mixes of their
    ink and the card). The components lying mostly inside it are the photo's; the page
    showing through it (a cut-out emblem's gaps) is not."""
    size = TUNING.photo_cluster_close
    dense = cv2.morphologyEx(specks.astype(np.uint8), cv2.MORPH_CLOSE,
                             cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    count, clusters, stats, _ = cv2.connectedComponentsWithStats(dense, connectivity=8)
    out, inside = [], np.zeros(comp.count + 1, bool)
    for index in range(1, count):
        x, y, w, h = stats[index, :4]
        if w * h < TUNING.photo_min_area:  # most are the rims of shapes and glyphs
            continue
        window = (slice(y, y + h), slice(x, x + w))
        own = ndimage.binary_fill_holes(clusters[window] == index)
        area = int(own.sum())
        labels = comp.labels[window][own]
        if (area < TUNING.photo_min_area
                or (specks[window] & own).sum() < TUNING.photo_cluster_specks * area
                or np.unique(labels).size < TUNING.photo_min_parts
                or _colors(comp.mean[labels]) < TUNING.photo_colors):
            continue
        # Per cluster, work stays within its window (a document may hold millions of
        # components): its members are the labels with half their pixels or more in it.
        found, count_in = np.unique(labels, return_counts=True)
        members = found[count_in >= 0.5 * comp.area[found]]
        inside[members] = True
        out.append(_cluster_element(comp, Box.of_window(window), own, members, is_bg))
    return out, inside


def _cluster_element(comp: Components, box: Box, own: np.ndarray, members: np.ndarray,
                     is_bg: np.ndarray) -> Element:
    """The photo of cluster ``own`` (in ``box``) and its ``members`` (labels), whole (a
    member may reach past the cluster), holes filled but for the page showing through
    (runs of background of :data:`TUNING.min_area` pixels or more: a lone pixel that happens
    to match the page is still the photo's)."""
    frame = comp.labels.shape
    whole = box.grow(TUNING.min_area, frame)  # a speck reaches at most that far out
    for label in members.tolist():
        if label in comp.boxes:
            whole = whole.union(comp.boxes[label])
    mask = np.isin(comp.labels[whole.slices], members)
    mask[box.within(whole)] |= own
    mask = ndimage.binary_fill_holes(mask) & ~_runs(is_bg[whole.slices], TUNING.min_area)
    tight = ndimage.find_objects(mask.astype(np.uint8))[0]
    return Element(Box.of_window(tight, (whole.y0, whole.x0)), mask[tight], None, "photo",
                   [0])


def _runs(mask: np.ndarray, min_area: int) -> np.ndarray:
    """The parts of ``mask`` of at least ``min_area`` pixels (8-connected)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                               connectivity=8)
    return (stats[:, cv2.CC_STAT_AREA] >= min_area)[labels] & mask


def _colors(rgb: np.ndarray) -> int:
    """How many distinct colours ``rgb`` (n, 3 in 0..1) holds, at 32 levels a channel."""
    q = np.clip(rgb * 32, 0, 31).astype(np.int64)
    return int(np.unique((q[:, 0] * 32 + q[:, 1]) * 32 + q[:, 2]).size)
