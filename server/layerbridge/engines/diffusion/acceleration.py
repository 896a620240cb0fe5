"""Speed levers for the transformer: step caching, compilation, and the forward counter that
makes caching visible.

Caching goes through cache-dit rather than diffusers' own hooks: cache-dit knows the Qwen
pipelines by name (its adapter for ``QwenImage*`` pipelines, the layered one included), runs
true CFG's two forwards per step with separate caches (``enable_separate_cfg``), and ships
DBCache with TaylorSeer, the published 2.25x on Qwen-Image; diffusers 0.42.1 has First-Block
Cache but not DBCache. cache-dit is a pure-Python wheel that installs beside the pinned CPU
torch without pulling another build. ``fbcache`` is DBCache with one front block (F1B0), what
First-Block Cache does; ``dbcache`` is F8B0 with TaylorSeer order 1.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any

from layerbridge.engines.base import BAD_PARAMS, EngineError

log = logging.getLogger("layerbridge.diffusion")

CACHES = ("none", "fbcache", "dbcache")
#: cache-dit's published setting for Qwen-Image: 8 front blocks always computed, none at the
#: back, a step reused when the first blocks' residual moved less than 8 %.
DBCACHE_FRONT_BLOCKS = 8
RESIDUAL_THRESHOLD = 0.08
#: Steps always computed before any is reused (cache-dit's default).
WARMUP_STEPS = 8


@dataclass(frozen=True)
class Acceleration:
    """The speed options of ``layerbridge serve``. ``threshold`` and ``warmup_steps`` are the
    cache's knobs (the defaults are the published ones; the tiny engine, whose random
    weights change a lot per step, uses a looser threshold so that caching shows on CPU)."""

    cache: str = "none"
    compile: bool = False
    gpus: int = 1
    threshold: float = RESIDUAL_THRESHOLD
    warmup_steps: int = WARMUP_STEPS


def acceleration_options(cache: str = "none", compile: bool = False, gpus: int = 1,
                         **knobs: Any) -> Acceleration:
    """Validated :class:`Acceleration`; a bad value is the user's to fix, not a crash."""
    if cache not in CACHES:
        raise EngineError(BAD_PARAMS, f"cache must be one of {', '.join(CACHES)}, not {cache!r}")
    if gpus != 1:
        raise EngineError(BAD_PARAMS, multi_gpu_refusal(gpus))
    return Acceleration(cache=cache, compile=compile, gpus=gpus, **knobs)


def multi_gpu_refusal(gpus: int) -> str:
    return (f"--gpus {gpus}: one job across GPUs (CFG-parallel, Ulysses context parallel) "
            "needs one torch.distributed worker per GPU (cache-dit's ParallelismConfig or "
            "diffusers' enable_parallelism under torchrun), which this server does not start "
            "yet; run one server per GPU (--device cuda:N) instead")


def accelerate(pipe: Any, acceleration: Acceleration) -> None:
    """Apply caching and compilation to ``pipe``'s transformer, once per pipeline."""
    if getattr(pipe, "_layerbridge_accelerated", False):
        return
    if acceleration.cache != "none":
        enable_cache(pipe, acceleration)
    if acceleration.compile:
        # Compiling the repeated block once and reusing it for all 60 is what diffusers
        # recommends for these transformers: a short compile, most of the gain. Not
        # fullgraph: the forward counter's hook on the last block runs outside the graph.
        counter_for(pipe)
        pipe.transformer.compile_repeated_blocks(fullgraph=False)
    pipe._layerbridge_accelerated = True


def enable_cache(pipe: Any, acceleration: Acceleration) -> None:
    """Step caching through cache-dit (see the module doc for why that library)."""
    try:
        import cache_dit
    except ImportError as exc:
        raise EngineError(BAD_PARAMS, f"--cache {acceleration.cache} needs cache-dit: "
                          "pip install cache-dit") from exc
    route_cache_dit_logs()
    blocks = len(pipe.transformer.transformer_blocks)
    front = 1 if acceleration.cache == "fbcache" else DBCACHE_FRONT_BLOCKS
    config = cache_dit.DBCacheConfig(
        Fn_compute_blocks=min(front, blocks - 1), Bn_compute_blocks=0,
        residual_diff_threshold=acceleration.threshold,
        max_warmup_steps=acceleration.warmup_steps, enable_separate_cfg=True,
    )
    calibrator = (cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=1)
                  if acceleration.cache == "dbcache" else None)
    cache_dit.enable_cache(pipe, cache_config=config, calibrator_config=calibrator)


def route_cache_dit_logs() -> None:
    """cache-dit logs to stdout through one shared handler, where ``layerbridge serve``
    prints only its address (clients and scripts read that line): point it at stderr."""
    from cache_dit import logger

    handler = getattr(logger, "_default_handler", None)
    if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
        handler.setStream(sys.stderr)
        handler.__dict__.pop("flush", None)  # it was bound to stdout's flush


class ForwardCounter:
    """Counts the transformer's forwards and how many of them ran every block: a forward whose
    last block did not run was served from the step cache. Hooks only count; they change
    nothing the model computes."""

    def __init__(self, transformer: Any) -> None:
        self._lock = threading.Lock()
        self.forwards = 0
        self.computed = 0
        import torch

        # Eager even inside a compiled block: a counter traced into a graph would count once.
        transformer.register_forward_pre_hook(torch._dynamo.disable(self._on_forward))
        transformer.transformer_blocks[-1].register_forward_pre_hook(
            torch._dynamo.disable(self._on_last_block))

    def _on_forward(self, module: Any, args: Any) -> None:
        with self._lock:
            self.forwards += 1

    def _on_last_block(self, module: Any, args: Any) -> None:
        with self._lock:
            self.computed += 1

    def totals(self) -> tuple[int, int]:
        """(forwards, computed) so far."""
        with self._lock:
            return self.forwards, self.computed


def counter_for(pipe: Any) -> ForwardCounter:
    """The pipeline's transformer's counter, made on first use."""
    counter = getattr(pipe.transformer, "_layerbridge_counter", None)
    if counter is None:
        counter = ForwardCounter(pipe.transformer)
        pipe.transformer._layerbridge_counter = counter
    return counter
