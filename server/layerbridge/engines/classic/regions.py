"""Regions: split the image into flat-colour components and turn them into elements.

Neighbouring pixels whose colours differ by at most :data:`TUNING.link_tol` are linked, so flat
fills and smooth gradients become one component each while anti-aliased edge pixels (a mix
of two colours) fall into tiny or one-pixel-thin components: those are "mixes" and go to
whichever element is peeled over them. Superpixels were tried by the prototype and cut
text and shapes apart, so plain linked components are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.color import channel_max, color_distance
from layerbridge.engines.classic.tuning import TUNING


@dataclass
class Element:
    """One thing to peel: a mask in a box, its colour if flat, and its kind."""

    box: Box  # document pixels
    mask: np.ndarray  # bool, box-sized
    color: np.ndarray | None  # (3,) float in [0, 1] for flat elements, else None
    kind: str = "shape"  # shape | text | texture | photo | code
    members: list[int] = field(default_factory=list)
    #: Alpha from colour unmixing alone, nowhere forced opaque: faint strokes whose pixels
    #: are all part-covered.
    unmixed: bool = False

    def __post_init__(self) -> None:
        self.box = Box(*self.box)  # a plain (y0, y1, x0, x1) tuple is taken too

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full_mask(self, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), bool)
        out[self.box.slices] = self.mask
        return out


@dataclass
class Components:
    """Linked components: a label image and per-label statistics (label 0 is unused)."""

    labels: np.ndarray  # (h, w) int32, 1..n
    count: int
    area: np.ndarray  # (n+1,)
    mean: np.ndarray  # (n+1, 3)
    std: np.ndarray  # (n+1,) max channel std
    #: label -> its box, for labels of at least TUNING.min_area pixels only: a photo has
    #: about one component per pixel, and a box per speck would cost more than the image.
    boxes: dict[int, Box]


def link_components(rgb8: np.ndarray, cut: np.ndarray | None = None) -> Components:
    """Label pixels linked through neighbours within :data:`TUNING.link_tol` levels (4-connected).

    Where ``cut`` (bool, e.g. "is background") differs between neighbours they are never
    linked: a panel two levels off the background would otherwise leak into it through a
    soft shadow.
    """
    h, w = rgb8.shape[:2]
    right = _within_tol(rgb8[:, 1:], rgb8[:, :-1])
    down = _within_tol(rgb8[1:], rgb8[:-1])
    if cut is not None:
        right &= cut[:, 1:] == cut[:, :-1]
        down &= cut[1:] == cut[:-1]
    # The pixels on the even places of a grid twice as fine, each link set between its two
    # pixels: the grid's 4-connected parts are the linked components (one fast OpenCV pass
    # instead of a graph of every link).
    grid = np.zeros((2 * h - 1, 2 * w - 1), np.uint8)
    grid[::2, ::2] = 1
    grid[::2, 1::2] = right
    grid[1::2, ::2] = down
    del right, down
    count, parts = cv2.connectedComponents(grid, connectivity=4, ltype=cv2.CV_32S)
    del grid
    labels = _in_raster_order(np.ascontiguousarray(parts[::2, ::2]), count)
    del parts
    n = count - 1
    return _stats(labels, n, rgb8)


def _in_raster_order(parts: np.ndarray, count: int) -> np.ndarray:
    """Labels 1..count-1 renumbered in the order of each one's first pixel (row by row), so
    that the elements found come in a fixed order whatever numbering the labeller chose."""
    flat = parts.ravel()
    first = np.full(count, flat.size, np.int64)
    np.minimum.at(first, flat, np.arange(flat.size))
    renumber = np.zeros(count, np.int32)
    renumber[1 + np.argsort(first[1:], kind="stable")] = np.arange(1, count, dtype=np.int32)
    return renumber[parts]


def _within_tol(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether uint8 RGB pixels ``a`` and ``b`` differ by at most TUNING.link_tol in every
    channel (cv2's absolute difference: uint8 ``a - b`` would wrap round)."""
    if a.size == 0:  # a one-pixel-wide image has no neighbours that way (cv2 returns None)
        return np.zeros(a.shape[:2], bool)
    return channel_max(cv2.absdiff(a, b)) <= TUNING.link_tol


def _stats(labels: np.ndarray, n: int, rgb8: np.ndarray) -> Components:
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1).astype(np.float64)
    safe = np.maximum(area, 1)
    mean = np.zeros((n + 1, 3))
    sq = np.zeros((n + 1, 3))
    for c in range(3):  # one channel at a time: a float copy of the whole image is big
        channel = rgb8[..., c].ravel() / 255.0
        mean[:, c] = np.bincount(flat, channel, n + 1) / safe
        sq[:, c] = np.bincount(flat, channel * channel, n + 1) / safe
    std = np.sqrt(np.maximum(sq - mean**2, 0)).max(axis=1)
    big = np.flatnonzero(area >= TUNING.min_area)
    big = big[big > 0]
    compact = np.zeros(n + 1, np.int32)
    compact[big] = np.arange(1, big.size + 1, dtype=np.int32)
    found = ndimage.find_objects(compact[labels], max_label=big.size)
    boxes = {
        int(label): Box.of_window(s)
        for label, s in zip(big, found, strict=True)
        if s is not None
    }
    return Components(labels, n, area.astype(np.int64), mean, std, boxes)


def is_thin(comp: Components, label: int) -> bool:
    """True for components at most two pixels wide: anti-aliasing seams along edges."""
    mask = (comp.labels[comp.boxes[label].slices] == label).astype(np.uint8)
    if min(mask.shape) <= TUNING.thin_width:
        return True
    return not cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT).any()


def is_mix(comp: Components, label: int, rgb: np.ndarray | None = None) -> bool:
    """True for anti-aliasing seams: at most two pixels wide and coloured as a blend of two
    neighbouring components. Thin strokes of small text are thin too but not a blend.

    With the image ``rgb`` the neighbours' colours are taken where they touch the seam, not
    averaged over them: a gradient background's mean is far from its colour here."""
    box = comp.boxes[label]
    mask = (comp.labels[box.slices] == label).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    if (min(mask.shape) > TUNING.thin_width
            and cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT).any()):
        return False
    around = box.grow(1, comp.labels.shape)
    labels = comp.labels[around.slices]
    own = labels == label
    ring = cv2.dilate(own.astype(np.uint8), kernel).astype(bool) & ~own
    near = np.unique(labels[ring])
    near = near[comp.area[near] >= TUNING.min_area]
    near = near[np.argsort(-comp.area[near])][:TUNING.blend_neighbours]
    if rgb is None:
        return _is_blend(comp.mean[label], comp.mean[near])
    window = rgb[around.slices]
    local = np.array([window[ring & (labels == n)].mean(0) for n in near]).reshape(-1, 3)
    return _is_blend(window[own].mean(0), local)


def borders(comp: Components, seams: list[int], owners: np.ndarray, others: np.ndarray
            ) -> dict[int, int]:
    """Which of the thin ``seams`` are a flat shape's border, not a blend: seam label -> the
    label it belongs to. ``owners`` maps each label to the shape label it belongs to (0 for
    none; a shape maps to itself). A seam belongs to the one shape it touches if its colour
    is within TUNING.border_tol of the shape's; a seam beyond a border seam (the border's
    own anti-aliasing, drawn in the shape's colour) joins through it, so two passes. A seam
    that touches one of the ``others`` (per label: another element, a thin one too) lies
    between two elements, not between a shape and the page, and stays a blend: as a border
    the shape would meet that element (the two layers overlapping, one over the other)."""
    owners = owners.copy()
    out: dict[int, int] = {}
    near = _neighbours(comp.labels, np.array(seams, np.int64))
    for _ in range(2):
        for label in seams:
            if label in out or label not in near:
                continue
            around = near[label]
            if (others[around] & (owners[around] == 0)).any():
                continue
            touching = np.unique(owners[around])
            touching = touching[touching > 0]
            if (len(touching) == 1 and np.abs(comp.mean[touching[0]] - comp.mean[label]).max()
                    <= TUNING.border_tol):
                out[label] = owners[label] = int(touching[0])
    return out


def _neighbours(labels: np.ndarray, of: np.ndarray) -> dict[int, np.ndarray]:
    """For each label in ``of``: the labels next to it (8-connected), in one pass over the
    image rather than a window per label."""
    n = int(labels.max()) + 1
    wanted = np.zeros(n, bool)
    wanted[of] = True
    keys = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :]),
                 (labels[:-1, :-1], labels[1:, 1:]), (labels[:-1, 1:], labels[1:, :-1])):
        step = a != b
        first, second = a[step].astype(np.int64), b[step].astype(np.int64)
        for x, y in ((first, second), (second, first)):
            keep = wanted[x]
            keys.append(x[keep] * n + y[keep])
    key = np.unique(np.concatenate(keys))
    if not len(key):
        return {}
    source, target = key // n, key % n
    starts = np.flatnonzero(np.r_[True, source[1:] != source[:-1]])
    groups = np.split(target, starts[1:])
    return {int(source[i]): g for i, g in zip(starts, groups, strict=True)}


def _is_blend(color: np.ndarray, others: np.ndarray) -> bool:
    """Whether ``color`` lies on a segment between two of ``others`` (or equals one)."""
    tol = TUNING.blend_tol
    if len(others) == 0:
        return True
    if color_distance(others, color).min() <= tol:
        return True
    for i in range(len(others)):
        for j in range(i + 1, len(others)):
            d = others[j] - others[i]
            t = float(np.clip((color - others[i]) @ d / max(float(d @ d), 1e-12), 0, 1))
            if np.abs(others[i] + t * d - color).max() <= tol:
                return True
    return False


def inlays(comp: Components, hosts: np.ndarray, inlay: np.ndarray) -> list[int]:
    """The ``inlay`` labels (a bool per label) lying wholly in the holes of one of the
    ``hosts`` labels, kept where a host holds them as a solid shape holds its label: several
    parts, a small share of the shape, the shape with its holes filled near convex (see the
    ``inlay_*`` fields of :data:`TUNING`)."""
    out: list[int] = []
    for host in np.flatnonzero(hosts & (comp.area >= TUNING.inlay_min_host)):
        box = comp.boxes[int(host)]
        labels = comp.labels[box.slices]
        own = labels == host
        filled = ndimage.binary_fill_holes(own)
        holes = filled & ~own
        hole_area, filled_area = int(holes.sum()), int(filled.sum())
        if hole_area == 0 or hole_area > TUNING.inlay_max_share * filled_area:
            continue
        inside, count = np.unique(labels[holes], return_counts=True)
        whole = inlay[inside] & (count == comp.area[inside])
        if whole.sum() < TUNING.inlay_min_count:
            continue
        hull = cv2.convexHull(cv2.findNonZero(filled.astype(np.uint8)))
        if filled_area < TUNING.inlay_solidity * cv2.contourArea(hull):
            continue
        out.extend(int(label) for label in inside[whole])
    return out


def element_of(comp: Components, label: int, flat_tol: float) -> Element:
    """An element made of one component."""
    box = comp.boxes[label]
    mask = comp.labels[box.slices] == label
    color = comp.mean[label].copy() if comp.std[label] <= flat_tol else None
    return Element(box, mask, color, "shape" if color is not None else "texture",
                   [label])


def owner_map(elements: list[Element], frame: tuple[int, int] | None = None) -> np.ndarray:
    """Which element (index + 1, 0 for none) lies at each pixel of ``frame`` (height, width;
    by default as far as the elements' boxes reach); a later element wins where two do."""
    if frame is None:
        frame = (max((e.box.y1 for e in elements), default=0),
                 max((e.box.x1 for e in elements), default=0))
    out = np.zeros(frame, np.int32)
    for k, e in enumerate(elements, start=1):
        out[e.box.slices][e.mask] = k
    return out


def same_color(a: Element, b: Element) -> bool:
    """Whether both are flat and of one colour, to within ``same_color`` (max channel)."""
    if a.color is None or b.color is None:
        return False
    return float(np.abs(a.color - b.color).max()) <= TUNING.same_color


def union(a: Element, b: Element) -> Element:
    """One element covering both, with the colour and kind of the bigger one.

    (A shape that absorbed a few glyph-sized pieces of itself is still a shape.)"""
    box = a.box.union(b.box)
    mask = np.zeros((box.height, box.width), bool)
    for e in (a, b):
        mask[e.box.within(box)] |= e.mask
    big = a if a.area >= b.area else b
    return Element(box, mask, big.color, big.kind, a.members + b.members,
                   a.unmixed and b.unmixed)
