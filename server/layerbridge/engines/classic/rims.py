"""Rims: the anti-aliased seam where two elements meet belongs to one of them, not both.

Peeled one by one, two elements that touch both take a part of the seam pixels between
them (each pixel there is a mix of both colours), so their layers overlap along the seam.
A designer's layers overlap where one lies on the other, not along a shared edge; and an
overlap, however thin, makes one layer lie over the other, a stack deeper than the design's.
So where two layers overlap only in a thin rim, each rim pixel goes to the one of the two
that covers it more, which takes the pixel over the layers below (its colour recomputed so
the composite is unchanged).
"""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.peel import min_alpha
from layerbridge.engines.classic.scene import Piece
from layerbridge.engines.classic.tuning import TUNING


def separate_rims(pieces: list[Piece]) -> None:
    """In place on the float RGBA layers (bottom first, the bottom one opaque and full
    frame): give each rim pixel shared by exactly two upper layers to one of them."""
    if len(pieces) < 3:
        return
    base = pieces[0].pixels
    count = np.zeros(base.shape[:2], np.int16)
    for piece in pieces[1:]:
        count[piece.box.slices] += piece.pixels[..., 3] > 0
    sizes = [int((p.pixels[..., 3] > 0).sum()) for p in pieces]
    for j in range(len(pieces) - 1, 1, -1):
        for i in range(j - 1, 0, -1):
            _separate(pieces[i], pieces[j], min(sizes[i], sizes[j]), count, base)


def _separate(lower: Piece, upper: Piece, smaller: int, count: np.ndarray,
              base: np.ndarray) -> None:
    """Give the rim ``lower`` and ``upper`` share to one of them, if a rim is all they
    share (``smaller``: the pixels of the smaller of the two)."""
    meet = lower.box.intersection(upper.box)
    if meet.empty:
        return
    a = lower.pixels[meet.within(lower.box)]
    b = upper.pixels[meet.within(upper.box)]
    shared = (a[..., 3] > 0) & (b[..., 3] > 0)
    n = int(shared.sum())
    if n == 0 or n > TUNING.rim_share * smaller:
        return
    if ((a[..., 3] >= 1.0) & (b[..., 3] >= 1.0)).any():
        return  # somewhere one covers the other whole: one lies on the other
    shared &= count[meet.slices] == 2
    if not shared.any():
        return
    under = base[meet.slices][..., :3][shared]
    seen = _over(_over(under, a[shared]), b[shared])
    keep_upper = b[..., 3][shared] >= a[..., 3][shared]
    ys, xs = np.nonzero(shared)
    for layer, other, keep in ((b, a, keep_upper), (a, b, ~keep_upper)):
        if not keep.any():
            continue
        py, px = ys[keep], xs[keep]
        alpha = np.maximum(layer[py, px, 3], min_alpha(seen[keep], under[keep]))
        alpha = np.clip(np.ceil(alpha * 255.0 - 1e-6) / 255.0, 1 / 255, 1.0)
        color = (seen[keep] - (1.0 - alpha[:, None]) * under[keep]) / alpha[:, None]
        layer[py, px, :3] = np.rint(np.clip(color, 0.0, 1.0) * 255.0) / 255.0
        layer[py, px, 3] = alpha
        other[py, px, 3] = 0.0
    count[meet.slices][shared] = 1


def _over(under: np.ndarray, layer: np.ndarray) -> np.ndarray:
    a = layer[:, 3:4]
    return a * layer[:, :3] + (1.0 - a) * under
