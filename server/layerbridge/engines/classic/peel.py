"""Peel one element off the image: its alpha, its colour, and the plate left under it.

Alpha comes from colour unmixing against the plate, ``a = <I - B, C - B> / |C - B|^2``,
which is exact on anti-aliased edges of flat elements. It is then raised to the smallest
value that keeps the un-blended colour ``F = (I - (1 - a) B) / a`` inside [0, 1], and
quantised upwards to 8 bits before ``F`` is taken, so ``a F + (1 - a) B`` is the input to
within half a level; the plate is recomputed from the rounded layer so no error carries on.
That is why the over-composite of the returned layers reproduces the input.
"""

from __future__ import annotations

import numpy as np

#: Below this colour contrast (|C - B|) unmixing is noise; the element's mask is used.
MIN_CONTRAST = 0.06


def unmix_alpha(image: np.ndarray, plate: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Alpha of a flat ``color`` over ``plate`` explaining ``image`` (all (..., 3))."""
    d = color - plate
    norm = (d * d).sum(-1)
    a = ((image - plate) * d).sum(-1) / np.maximum(norm, 1e-12)
    a = np.where(norm >= MIN_CONTRAST**2, a, 0.0)
    return np.clip(a, 0.0, 1.0)


def min_alpha(image: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """Smallest alpha for which ``F = (I - (1 - a) B) / a`` stays inside [0, 1]."""
    up = np.where(image > plate, (image - plate) / np.maximum(1.0 - plate, 1e-12), 0.0)
    down = np.where(image < plate, (plate - image) / np.maximum(plate, 1e-12), 0.0)
    return np.clip(np.maximum(up, down).max(-1), 0.0, 1.0)


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
