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
from layerbridge.engines.classic import photo
from layerbridge.engines.classic.decompose import decompose
from layerbridge.engines.classic.worker import decompose_in_child
from layerbridge.types import DecomposeParams, SplitParams

#: A worker process and its fixed costs. Two matting tiles in flight (``matte_threads``) took a
#: photo's job from 102 to 167-234 MiB in one process (folder-photoshop-karem, 0.7 MP), past
#: the 64 MiB this was before: 128 MiB more keeps the margin it had.
WORKING_FIXED_BYTES = 192 << 20
WORKING_BYTES_PER_PIXEL = 232

_NEEDS_MODEL = (
    "the classic engine is weight-free and cannot {what}: start the server with "
    "`--engine qwen` after installing the diffusion extra (pip install 'layerbridge[diffusion]') "
    "and the Qwen-Image weights"
)


class ClassicEngine(Engine):
    """Weight-free object layers on CPU: background, shapes, text, a photo subject.

    ``layers`` = "auto" returns the elements found, close parts of one colour merged; an
    int N merges the most alike elements until N layers remain, background included
    (engines/classic/merging.py); fewer come back when fewer were found. ``split``
    decomposes one layer and returns its parts at its position.
    """

    name = "classic"
    ops = ("decompose", "split")
    min_layers = 1
    max_layers = 16

    def __init__(self, **options: object) -> None:
        self.options = options

    def working_bytes(self, pixels: int) -> int:
        """A worker process of its own plus a part per pixel. Measured through the real
        server, as the growth of the summed PSS of the server and its processes over the
        level before one job (`benchmarks/bench_job_memory.py`): 2048x2048 photo-like
        +924 MiB (231 MB/MP), design-like +782 MiB, flat design +675 MiB; 1024x1024
        photo-like +262 MiB (fit: 40 MiB + 221 bytes a pixel). With headroom:"""
        return WORKING_FIXED_BYTES + WORKING_BYTES_PER_PIXEL * pixels

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
        image = np.random.default_rng(0).random((40, 40, 3))
        photo.matte(image, np.tile(np.arange(40) < 20, (40, 1)))  # its left half
        # Start the fork server the jobs' workers come from, and try one on the tiny image.
        decompose_in_child(tiny, "auto", lambda fraction, stage: None, lambda: None)

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        params = request.params
        if request.op not in self.ops or not isinstance(params, (DecomposeParams, SplitParams)):
            raise EngineError(UNSUPPORTED_OP, self.unsupported_message(request.op))
        source = required_input(request, "image" if request.op == "decompose" else "layer")
        pixels = np.asarray(source.pixels)
        count = self._count(params.layers)
        ctx.progress(0.0, "start")
        # In a child process: a cancel stops it at once, wherever the analysis is.
        pieces = decompose_in_child(pixels, count, ctx.progress, ctx.check_cancelled)
        ctx.progress(1.0, "done")
        for name, (y0, _, x0, _), rgba in pieces:
            yield Layer(name=name, pixels=rgba, x=source.x + x0, y=source.y + y0)

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
