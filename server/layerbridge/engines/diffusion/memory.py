"""Where a pipeline's weights live: device, precision, offload, VAE tiling.

The choice itself is the planner's (:mod:`.planner`); this module applies it to a pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from layerbridge.engines.base import BAD_PARAMS, ENGINE_FAILED, OUT_OF_MEMORY, EngineError

log = logging.getLogger("layerbridge.diffusion")

OOM_ADVICE = (
    "the GPU ran out of memory: run `layerbridge doctor` for a plan that fits this card "
    "(--offload model, --quantize int8 or nf4, or --offload group on any card), or use a "
    "smaller resolution (640), fewer layers, or --vae-tiling"
)
#: Precisions offered: bf16 on a GPU, float32 on a CPU. float16 overflows in the Qwen
#: family's activations (NaN, black images: ComfyUI #10751, Qwen-Image-Layered #22).
DTYPES = ("bfloat16", "float32")
#: none: all on the device; model: one component at a time (diffusers' model CPU offload);
#: group: blocks streamed from RAM (diffusers' group offload). ``sequential`` (accelerate's
#: leaf offload) crashes on the Qwen2.5-VL embedding with transformers 5 and is served by
#: group offload, which does the same job faster.
OFFLOADS = ("none", "model", "group")
OFFLOAD_ALIASES = {"sequential": "group"}
#: VAE tiling applies above the 640 bucket's area only: at or below it the image decodes in
#: one piece, the same bytes as without tiling. Tiles of 512 px overlap by 128 px.
VAE_TILING_MIN_AREA = 640 * 640
VAE_TILE = 512
VAE_TILE_STRIDE = 384


@dataclass(frozen=True)
class MemoryOptions:
    """How pipelines are placed: the options for smaller GPUs (see docs/gpu-engine.md)."""

    device: str = "cpu"
    dtype: str = "float32"
    offload: str = "none"  # none | model | group
    vae_tiling: bool = False


def memory_options(device: str, dtype: str, offload: str, vae_tiling: bool) -> MemoryOptions:
    """Validated :class:`MemoryOptions` (a bad name is the user's to fix, not a crash)."""
    if dtype == "float16":
        raise EngineError(BAD_PARAMS, "float16 is not offered: the Qwen models overflow in "
                          "float16 (NaN, black images); use --dtype bfloat16 on a GPU "
                          "(the default) or float32 on a CPU")
    if dtype not in DTYPES:
        raise EngineError(BAD_PARAMS, f"dtype must be bfloat16 or float32, not {dtype!r}")
    if offload in OFFLOAD_ALIASES:
        log.warning("--offload %s is served by --offload %s (block-level group offload)",
                    offload, OFFLOAD_ALIASES[offload])
        offload = OFFLOAD_ALIASES[offload]
    if offload not in OFFLOADS:
        raise EngineError(BAD_PARAMS, f"offload must be none, model or group, not {offload!r}")
    return MemoryOptions(device=device, dtype=dtype, offload=offload, vae_tiling=vae_tiling)


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def place_pipeline(pipe: Any, memory: MemoryOptions) -> None:
    """Put ``pipe`` where the memory options say: all on the device, or offloaded to the CPU
    model by model (``model``: small slowdown) or block by block (``group``: least memory,
    slowest). Hooks are set again each time a pipeline becomes active, because siblings share
    modules and the last pipeline to set a hook owns it."""
    try:
        if memory.offload == "model":
            pipe.enable_model_cpu_offload(device=memory.device)
        elif memory.offload == "group":
            enable_group_offload(pipe, memory.device)
        else:
            pipe.to(memory.device)
    except (RuntimeError, ValueError) as exc:
        if "out of memory" in str(exc).lower():
            raise EngineError(OUT_OF_MEMORY, OOM_ADVICE) from exc
        raise EngineError(ENGINE_FAILED, f"cannot place the pipeline on {memory.device} with "
                          f"offload={memory.offload}: {exc}") from exc


def enable_group_offload(pipe: Any, device: str) -> None:
    """Block-level group offload of every module of ``pipe`` not already offloaded (a shared
    text encoder keeps the hooks its first pipeline set); CUDA streams overlap the copies with
    compute where the device has them."""
    import torch
    from diffusers.hooks.group_offloading import _is_group_offload_enabled, apply_group_offloading

    onload = torch.device(device)
    use_stream = onload.type == "cuda"
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module) or _is_group_offload_enabled(component):
            continue
        kwargs = {"onload_device": onload, "offload_type": "block_level",
                  "num_blocks_per_group": 1, "use_stream": use_stream}
        if hasattr(component, "enable_group_offload"):
            component.enable_group_offload(**kwargs)
        else:
            apply_group_offloading(module=component, **kwargs)


def step_aside(idle: Any, active: Any, memory: MemoryOptions, home: str = "cpu") -> None:
    """Move every module of an idle pipeline that the active one does not share to ``home``
    (the CPU), so the active pipeline fits: its transformer, and its text encoder and VAE when
    their files differ from the active pipeline's. Offload modes already keep idle modules
    there."""
    if memory.offload != "none" or memory.device == home:
        return
    import torch

    in_use = {id(module) for module in active.components.values()}
    for module in idle.components.values():
        if isinstance(module, torch.nn.Module) and id(module) not in in_use:
            module.to(home)
