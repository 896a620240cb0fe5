"""Whole-stack step: the input's own transparency.

The peel works on opaque colour. An input with alpha ``A`` is decomposed as if opaque and
its transparency is then pushed into the stack from the top: each layer's alpha becomes
``a * T`` where ``T`` is the opacity still to explain at that depth; colours stay as they
are and the over-composite of the stack is ``(I, A)``. For opaque input this step only
re-derives the bottom layer from the rounded upper layers, which keeps the sum exact.
"""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.color import color_distance
from layerbridge.engines.classic.tuning import TUNING


def apply_input_alpha(layers: list[tuple[Box, np.ndarray]], rgba: np.ndarray,
                      surround: np.ndarray | None = None) -> None:
    """Make float RGBA ``layers`` (bottom first, bottom opaque and full-frame; each given
    over its box y0, y1, x0, x1) composite to uint8 ``rgba``, in place.

    Upper layers keep their colour and get alpha ``a * T`` (rounded to 8 bits); the exact
    remainder ``(P - a F) / (1 - a)`` of the premultiplied target is carried down, and the
    bottom layer takes what is left, so rounding never accumulates. Each layer is rewritten
    only over its own alpha's box (outside it nothing changes).

    ``surround`` is the colour the input's transparent surround was given, if it had one:
    where the bottom layer is that colour it is nothing, also under opaque layers.
    """
    alpha = rgba[..., 3].astype(np.float64) / 255.0
    pre = rgba[..., :3] / 255.0 * alpha[..., None]
    # Under a fully opaque layer nothing below shows: the lower layers keep their own alpha
    # and colour there (an occluded shape stays whole) instead of being cut to zero.
    hidden = np.zeros(alpha.shape, bool)
    for box, layer in reversed(layers[1:]):
        window = _alpha_box(layer[..., 3])
        if window is not None:
            doc = Box.of_window(window, (box.y0, box.x0)).slices
            _carry_down(layer[window], alpha[doc], pre[doc], hidden[doc])
    base = layers[0][1]
    color = np.divide(pre, alpha[..., None], out=base[..., :3].copy(), where=alpha[..., None] > 0)
    base[..., 3] = np.where(hidden, 1.0, alpha)
    if surround is not None:
        surrounding = color_distance(base[..., :3], surround) <= TUNING.surround_tol
        base[..., 3][hidden & surrounding] = 0.0
    base[..., :3] = np.where(hidden[..., None], base[..., :3], np.clip(color, 0.0, 1.0))


def _alpha_box(alpha: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero((alpha > 0).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((alpha[rows[0]:rows[-1] + 1] > 0).any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _carry_down(layer: np.ndarray, alpha: np.ndarray, pre: np.ndarray, hidden: np.ndarray
                ) -> None:
    """One layer's step, in place on views of one box: scale its alpha by the opacity left
    to explain, and leave in ``alpha`` and ``pre`` what the layers under it must explain."""
    a = np.rint(layer[..., 3] * alpha * 255.0) / 255.0
    keep = 1.0 - a
    seen = keep > 1e-9
    safe = np.maximum(keep, 1e-12)[..., None]
    below = np.where(seen[..., None], (pre - a[..., None] * layer[..., :3]) / safe,
                     layer[..., :3])
    pre[:] = np.clip(below, 0.0, None)
    alpha[:] = np.clip(np.where(seen, (alpha - a) / safe[..., 0], 1.0), 0.0, 1.0)
    hidden |= ~seen
    layer[..., 3] = a
