"""Host-free RGBA image and layer maths shared by the server, engines, export and tests.

Everything here works on plain numpy arrays and :class:`~layerbridge.types.Layer`
objects, so the same code defines "what the user sees" for every engine and every test.
Colours are sRGB and not premultiplied, as on the wire; blending is done in float.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from layerbridge.types import Layer

__all__ = ["composite", "over", "resize_premultiplied", "to_float", "to_uint8", "trim_to_alpha"]


def to_float(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA -> float64 in [0, 1] (float64 so error does not pile up across many layers)."""
    return rgba.astype(np.float64) / 255.0


def to_uint8(rgba: np.ndarray) -> np.ndarray:
    """Float RGBA in [0, 1] -> uint8, rounded (truncating would darken by half a level)."""
    return np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)


def over(bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Porter-Duff ``top`` over ``bottom`` for float RGBA (not premultiplied), same shapes.

    Where the result is fully transparent its colour is 0, so results compare cleanly.
    """
    at, ab = top[..., 3:4], bottom[..., 3:4]
    a = at + ab * (1.0 - at)
    premul = top[..., :3] * at + bottom[..., :3] * ab * (1.0 - at)
    rgb = np.divide(premul, a, out=np.zeros_like(premul), where=a > 0)
    return np.concatenate([rgb, a], axis=-1)


def composite(layers: Iterable[Layer], width: int, height: int) -> np.ndarray:
    """Over-composite ``layers`` (bottom first, each at its x/y offset) into uint8 RGBA.

    Layers may lie partly or wholly outside the canvas; what falls outside is clipped.
    """
    canvas = np.zeros((height, width, 4), np.float64)
    for layer in layers:
        h, w = layer.pixels.shape[:2]
        x0, y0 = max(layer.x, 0), max(layer.y, 0)
        x1, y1 = min(layer.x + w, width), min(layer.y + h, height)
        if x0 >= x1 or y0 >= y1:
            continue
        src = to_float(layer.pixels[y0 - layer.y : y1 - layer.y, x0 - layer.x : x1 - layer.x])
        canvas[y0:y1, x0:x1] = over(canvas[y0:y1, x0:x1], src)
    return to_uint8(canvas)


def trim_to_alpha(layer: Layer) -> Layer | None:
    """Crop ``layer`` to the bounding box of its non-zero alpha, moving its offset to match.

    Returns ``None`` for a fully transparent layer (there is nothing to insert).
    """
    # OpenCV scans the alpha plane 4x faster than numpy's any() over a strided view, which
    # matters because every layer of every job passes through here before it is sent.
    alpha = cv2.extractChannel(np.ascontiguousarray(layer.pixels), 3)
    x0, y0, width, height = cv2.boundingRect(alpha)
    if width == 0:
        return None
    pixels = np.ascontiguousarray(layer.pixels[y0 : y0 + height, x0 : x0 + width])
    return Layer(name=layer.name, pixels=pixels, x=layer.x + x0, y=layer.y + y0)


def resize_premultiplied(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 RGBA to ``size`` = (width, height) without dark or coloured fringes.

    Resampling straight colour lets the (arbitrary) colour of transparent pixels bleed into
    edges; resampling premultiplied colour and dividing back by the resampled alpha does not.
    INTER_AREA is used to shrink (no aliasing), INTER_CUBIC to enlarge.
    """
    w, h = size
    if (w, h) == (rgba.shape[1], rgba.shape[0]):
        return rgba.copy()
    f = rgba.astype(np.float32) / 255.0
    f[..., :3] *= f[..., 3:4]
    shrink = w * h <= rgba.shape[0] * rgba.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    g = cv2.resize(f, (w, h), interpolation=interp).reshape(h, w, 4)
    g = np.clip(g, 0.0, 1.0)
    a = g[..., 3:4]
    g[..., :3] = np.divide(g[..., :3], a, out=np.zeros_like(g[..., :3]), where=a > 1e-6)
    return to_uint8(np.clip(g, 0.0, 1.0))
