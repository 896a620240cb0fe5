"""How far apart colours are, as the colour tolerances in :mod:`tuning` measure it.

The distance is the largest difference in any one channel (float RGB in [0, 1]): a pixel is
"within ``tol`` of" a colour when no channel is further than ``tol`` from it. Arrays of
pixels are measured here; two single colours are compared the same way in place
(``np.abs(a - b).max()``), where the speed of an array's reduction does not matter.
"""

from __future__ import annotations

import numpy as np


def channel_max(values: np.ndarray) -> np.ndarray:
    """The largest of the three channels of the last axis, per pixel. Two element-wise
    maximums: numpy's reduction over an axis of three took four times as long, and on full
    frames that was a tenth of the engine's time."""
    return np.maximum(np.maximum(values[..., 0], values[..., 1]), values[..., 2])


def color_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The largest per-channel difference between colours ``a`` and ``b`` (broadcast)."""
    difference = np.subtract(a, b)
    return channel_max(np.abs(difference, out=difference))
