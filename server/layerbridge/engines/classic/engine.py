"""The classic engine: the job protocol around :func:`decompose` (decompose and split)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from layerbridge.engines.base import (
    BAD_PARAMS,
    UNSUPPORTED_OP,
    Engine,
    EngineError,
    JobContext,
    JobRequest,
    Layer,
    required_input,
)
from layerbridge.engines.classic.decompose import decompose
from layerbridge.types import DecomposeParams, SplitParams

_NEEDS_MODEL = (
    "the classic engine is weight-free and cannot {what}: start the server with "
    "`--engine qwen` after installing the diffusion extra (pip install 'layerbridge[diffusion]') "
    "and the Qwen-Image weights"
)


class ClassicEngine(Engine):
    """Weight-free object layers on CPU: background, shapes, text, a photo subject.

    ``layers`` = "auto" returns every element found; an int N merges z-adjacent elements
    (smallest pair first) until N layers remain, background included; fewer come back when
    fewer were found. ``split`` decomposes one layer and returns its parts at its position.
    """

    name = "classic"
    ops = ("decompose", "split")
    min_layers = 1
    max_layers = 16

    def __init__(self, **options: object) -> None:
        self.options = options

    def unsupported_message(self, op: str) -> str:
        what = (
            "generate pixels from a prompt"
            if op == "generate"
            else ("regenerate a layer from a prompt" if op == "regenerate" else f"run {op!r}")
        )
        return _NEEDS_MODEL.format(what=what)

    def warm_up(self) -> None:
        """Import and JIT-compile everything (pymatting's numba kernels) on a tiny image."""
        tiny = np.zeros((24, 24, 4), np.uint8)
        tiny[..., 3] = 255
        tiny[6:18, 6:18, :3] = (200, 40, 40)
        decompose(tiny)
        try:
            from pymatting import estimate_alpha_cf
        except ImportError:
            return
        image = np.random.default_rng(0).random((12, 12, 3))
        trimap = np.full((12, 12), 0.5)
        trimap[:, :3], trimap[:, -3:] = 0.0, 1.0
        estimate_alpha_cf(image, trimap)

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        params = request.params
        if request.op not in self.ops or not isinstance(params, (DecomposeParams, SplitParams)):
            raise EngineError(UNSUPPORTED_OP, self.unsupported_message(request.op))
        source = required_input(request, "image" if request.op == "decompose" else "layer")
        pixels = np.asarray(source.pixels)
        count = self._count(params.layers)
        ctx.progress(0.0, "start")
        layers = decompose(pixels, count, ctx.progress, ctx.check_cancelled)
        ctx.progress(1.0, "done")
        for name, layer in layers:
            rgba = np.clip(np.rint(layer * 255.0), 0, 255).astype(np.uint8)
            yield Layer(name=name, pixels=rgba, x=source.x, y=source.y)

    def _count(self, value: object) -> int | str:
        if value == "auto" or value is None:
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int):
            raise EngineError(BAD_PARAMS, 'layers must be an integer or "auto"')
        if not self.min_layers <= value <= self.max_layers:
            raise EngineError(
                BAD_PARAMS, f"layers must be {self.min_layers}..{self.max_layers} for classic"
            )
        return value
