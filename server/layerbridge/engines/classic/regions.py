"""Regions: split the image into flat-colour components and turn them into elements.

Neighbouring pixels whose colours differ by at most :data:`LINK_TOL` are linked, so flat
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

#: Largest per-channel step (0..255 levels) between linked neighbours.
LINK_TOL = 3
#: Components smaller than this many pixels are anti-aliasing mixes or noise.
MIN_AREA = 8


@dataclass
class Element:
    """One thing to peel: a mask in a box, its colour if flat, and its kind."""

    box: tuple[int, int, int, int]  # y0, y1, x0, x1 (document pixels)
    mask: np.ndarray  # bool, box-sized
    color: np.ndarray | None  # (3,) float in [0, 1] for flat elements, else None
    kind: str = "shape"  # shape | text | texture
    members: list[int] = field(default_factory=list)
    #: Alpha from colour unmixing alone, nowhere forced opaque: faint strokes whose pixels
    #: are all part-covered.
    unmixed: bool = False

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full_mask(self, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), bool)
        y0, y1, x0, x1 = self.box
        out[y0:y1, x0:x1] = self.mask
        return out


@dataclass
class Components:
    """Linked components: a label image and per-label statistics (label 0 is unused)."""

    labels: np.ndarray  # (h, w) int32, 1..n
    count: int
    area: np.ndarray  # (n+1,)
    mean: np.ndarray  # (n+1, 3)
    std: np.ndarray  # (n+1,) max channel std
    #: label -> (y0, y1, x0, x1), for labels of at least MIN_AREA pixels only: a photo has
    #: about one component per pixel, and a box per speck would cost more than the image.
    boxes: dict[int, tuple[int, int, int, int]]


def link_components(rgb8: np.ndarray, cut: np.ndarray | None = None) -> Components:
    """Label pixels linked through neighbours within :data:`LINK_TOL` levels (4-connected).

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
    """Whether uint8 RGB pixels ``a`` and ``b`` differ by at most LINK_TOL in every channel
    (channel by channel: a max over the last axis of three is ten times slower)."""
    if a.size == 0:  # a one-pixel-wide image has no neighbours that way (cv2 returns None)
        return np.zeros(a.shape[:2], bool)
    step = cv2.absdiff(a, b)
    return np.maximum(np.maximum(step[..., 0], step[..., 1]), step[..., 2]) <= LINK_TOL


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
    big = np.flatnonzero(area >= MIN_AREA)
    big = big[big > 0]
    compact = np.zeros(n + 1, np.int32)
    compact[big] = np.arange(1, big.size + 1, dtype=np.int32)
    found = ndimage.find_objects(compact[labels], max_label=big.size)
    boxes = {
        int(label): (s[0].start, s[0].stop, s[1].start, s[1].stop)
        for label, s in zip(big, found, strict=True)
        if s is not None
    }
    return Components(labels, n, area.astype(np.int64), mean, std, boxes)


def is_thin(comp: Components, label: int) -> bool:
    """True for components at most two pixels wide: anti-aliasing seams along edges."""
    y0, y1, x0, x1 = comp.boxes[label]
    mask = (comp.labels[y0:y1, x0:x1] == label).astype(np.uint8)
    if min(mask.shape) <= 2:
        return True
    return not cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT).any()


def is_mix(comp: Components, label: int, rgb: np.ndarray | None = None) -> bool:
    """True for anti-aliasing seams: at most two pixels wide and coloured as a blend of two
    neighbouring components. Thin strokes of small text are thin too but not a blend.

    With the image ``rgb`` the neighbours' colours are taken where they touch the seam, not
    averaged over them: a gradient background's mean is far from its colour here."""
    y0, y1, x0, x1 = comp.boxes[label]
    mask = (comp.labels[y0:y1, x0:x1] == label).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    if min(mask.shape) > 2 and cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT).any():
        return False
    h, w = comp.labels.shape
    ya, yb, xa, xb = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
    labels = comp.labels[ya:yb, xa:xb]
    own = labels == label
    ring = cv2.dilate(own.astype(np.uint8), kernel).astype(bool) & ~own
    near = np.unique(labels[ring])
    near = near[comp.area[near] >= MIN_AREA]
    near = near[np.argsort(-comp.area[near])][:6]
    if rgb is None:
        return _is_blend(comp.mean[label], comp.mean[near])
    window = rgb[ya:yb, xa:xb]
    local = np.array([window[ring & (labels == n)].mean(0) for n in near]).reshape(-1, 3)
    return _is_blend(window[own].mean(0), local)


def _is_blend(color: np.ndarray, others: np.ndarray, tol: float = 0.04) -> bool:
    """Whether ``color`` lies on a segment between two of ``others`` (or equals one)."""
    if len(others) == 0:
        return True
    if np.abs(others - color).max(-1).min() <= tol:
        return True
    for i in range(len(others)):
        for j in range(i + 1, len(others)):
            d = others[j] - others[i]
            t = float(np.clip((color - others[i]) @ d / max(float(d @ d), 1e-12), 0, 1))
            if np.abs(others[i] + t * d - color).max() <= tol:
                return True
    return False


def element_of(comp: Components, label: int, flat_tol: float) -> Element:
    """An element made of one component."""
    y0, y1, x0, x1 = comp.boxes[label]
    mask = comp.labels[y0:y1, x0:x1] == label
    color = comp.mean[label].copy() if comp.std[label] <= flat_tol else None
    return Element((y0, y1, x0, x1), mask, color, "shape" if color is not None else "texture",
                   [label])


def union(a: Element, b: Element) -> Element:
    """One element covering both, with the colour and kind of the bigger one.

    (A shape that absorbed a few glyph-sized pieces of itself is still a shape.)"""
    y0, y1 = min(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    x0, x1 = min(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for e in (a, b):
        mask[e.box[0] - y0 : e.box[1] - y0, e.box[2] - x0 : e.box[3] - x0] |= e.mask
    big = a if a.area >= b.area else b
    return Element((y0, y1, x0, x1), mask, big.color, big.kind, a.members + b.members,
                   a.unmixed and b.unmixed)


def rewindow(mask: np.ndarray, src, dst) -> np.ndarray:
    """Re-window a box-sized array from box ``src`` to box ``dst`` (zero outside)."""
    out = np.zeros((dst[1] - dst[0], dst[3] - dst[2]) + mask.shape[2:], mask.dtype)
    y0, y1 = max(src[0], dst[0]), min(src[1], dst[1])
    x0, x1 = max(src[2], dst[2]), min(src[3], dst[3])
    if y0 < y1 and x0 < x1:
        out[y0 - dst[0] : y1 - dst[0], x0 - dst[2] : x1 - dst[2]] = mask[
            y0 - src[0] : y1 - src[0], x0 - src[2] : x1 - src[2]
        ]
    return out
