"""Image conversions and sizes around the Qwen pipelines (no model runs here)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerbridge.imaging import resize_premultiplied

NEUTRAL_GREY = 128
#: Qwen-Image's trained sizes (width, height), from its model card: a document is generated at
#: the one nearest its aspect, then resized; far from them the model blurs or repeats.
TRAINED_SIZES = ((1328, 1328), (1664, 928), (928, 1664), (1472, 1140), (1140, 1472),
                 (1584, 1056), (1056, 1584))
AUTO_MIN_LAYERS, AUTO_MAX_LAYERS = 2, 8
#: The model card's layer count, what ``auto`` gives a photo: a photo needs more than
#: AUTO_MAX_LAYERS colour bins, and more layers would only cost time (compute grows with
#: the layer count) without separating a photo's content better.
PHOTO_LAYERS = 4
#: Share of the opaque pixels the counted colours must cover together (see auto_layer_count).
AUTO_COVERAGE = 0.8


# --- the auto layer count -------------------------------------------------------------------


def auto_layer_count(rgba: np.ndarray) -> int:
    """How many layers ``layers: "auto"`` asks for, from the image's colour complexity.

    Rule: quantise colour to 2 bits per channel (64 bins) over the opaque pixels (alpha >= 128)
    of a copy at most 128 px wide; take the fewest bins that together cover 80 % of those
    pixels (specks and anti-aliasing do not count, busy images need many bins). More bins than
    AUTO_MAX_LAYERS make a photo (or noise): :data:`PHOTO_LAYERS`. Otherwise add one when at
    least 1 % of the image is transparent and clamp to 2..8: a four-colour flat graphic gets 4,
    a logo on transparency one more. Cheap and deterministic.
    """
    step = max(1, int(math.ceil(max(rgba.shape[:2]) / 128)))
    small = rgba[::step, ::step]
    opaque = small[..., 3] >= 128
    count = 0
    if opaque.any():
        bins = small[opaque][:, :3].astype(np.int32) >> 6
        codes = (bins[:, 0] << 4) | (bins[:, 1] << 2) | bins[:, 2]
        shares = np.sort(np.bincount(codes, minlength=64))[::-1] / codes.size
        count = int(np.searchsorted(np.cumsum(shares), AUTO_COVERAGE - 1e-9) + 1)
    if count > AUTO_MAX_LAYERS:
        return PHOTO_LAYERS
    if (~opaque).mean() >= 0.01:
        count += 1
    return int(min(max(count, AUTO_MIN_LAYERS), AUTO_MAX_LAYERS))


# --- small image helpers --------------------------------------------------------------------


def to_rgba_pil(rgba: np.ndarray) -> Any:
    """The layered pipeline needs RGBA PIL input: an RGB image crashes its 4-channel VAE."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8), "RGBA")


def over_grey(rgba: np.ndarray) -> Any:
    """``rgba`` over neutral grey as an RGB PIL image (what an RGB edit model can see)."""
    from PIL import Image

    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + NEUTRAL_GREY * (1.0 - alpha)
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def pil_to_rgba(image: Any, size: tuple[int, int]) -> np.ndarray:
    """A pipeline's PIL output as uint8 RGBA at ``size`` (width, height), resampled
    premultiplied so that soft edges keep their colour."""
    return resize_premultiplied(np.asarray(image.convert("RGBA")), size)


def bucket_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The (width, height) of area ``resolution**2`` with the input's aspect, multiples of 32
    (the same rule as the Qwen pipelines' ``calculate_dimensions``)."""
    w = math.sqrt(resolution * resolution * width / height)
    h = w * height / width
    return max(32, round(w / 32) * 32), max(32, round(h / 32) * 32)


def generation_size(width: int, height: int,
                    sizes: tuple[tuple[int, int], ...] = TRAINED_SIZES) -> tuple[int, int]:
    """The trained size to generate a ``width`` x ``height`` document at: the one whose aspect
    is nearest (by log ratio, so 2:1 and 1:2 are equally far from 1:1)."""
    aspect = math.log(width / height)
    return min(sizes, key=lambda size: abs(math.log(size[0] / size[1]) - aspect))


def scaled_sizes(sizes: tuple[tuple[int, int], ...],
                 factor: float) -> tuple[tuple[int, int], ...]:
    """``sizes`` times ``factor``, multiples of 16 (the pipelines' latent patch)."""
    return tuple((max(16, round(w * factor / 16) * 16), max(16, round(h * factor / 16) * 16))
                 for w, h in sizes)


def mask_in_layer(mask: Any, layer: Any) -> np.ndarray:
    """The selection (mask alpha, 0..1) over the layer's pixels, from document placement."""
    selected = np.zeros((layer.height, layer.width), np.float32)
    dx, dy = mask.x - layer.x, mask.y - layer.y
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + mask.width, layer.width), min(dy + mask.height, layer.height)
    if x1 > x0 and y1 > y0:
        crop = mask.pixels[y0 - dy:y1 - dy, x0 - dx:x1 - dx, 3]
        selected[y0:y1, x0:x1] = crop.astype(np.float32) / 255.0
    return selected
