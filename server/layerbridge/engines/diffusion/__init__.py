"""The diffusion engine: Qwen-Image-Layered and its siblings through diffusers.

- :mod:`.engine`: :class:`DiffusionEngine`, the ops over three pipelines.
- :mod:`.images`: conversions and sizes around the pipelines.
- :mod:`.progress`: progress and cancel through the step callback.
- :mod:`.memory`: where weights live (device, dtype, offload) and how pipelines are placed.
- :mod:`.loading`: the real pipelines from folders found by :mod:`layerbridge.weights`.

Nothing here imports :mod:`layerbridge.weights` at module level except :mod:`.loading`, and
weights never imports this package, so there is no cycle.
"""

from layerbridge.engines.diffusion.engine import DiffusionEngine
from layerbridge.engines.diffusion.images import (
    AUTO_MAX_LAYERS,
    AUTO_MIN_LAYERS,
    PHOTO_LAYERS,
    TRAINED_SIZES,
    auto_layer_count,
    bucket_size,
    generation_size,
    mask_in_layer,
    over_grey,
    pil_to_rgba,
    to_rgba_pil,
)
from layerbridge.engines.diffusion.memory import MemoryOptions, memory_options
from layerbridge.engines.diffusion.progress import StageProgress

__all__ = [
    "AUTO_MAX_LAYERS",
    "AUTO_MIN_LAYERS",
    "PHOTO_LAYERS",
    "TRAINED_SIZES",
    "DiffusionEngine",
    "MemoryOptions",
    "StageProgress",
    "auto_layer_count",
    "bucket_size",
    "generation_size",
    "mask_in_layer",
    "memory_options",
    "over_grey",
    "pil_to_rgba",
    "to_rgba_pil",
]
