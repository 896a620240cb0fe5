"""The one interface every engine implements, and the job objects it sees.

An engine turns a :class:`JobRequest` into RGBA layers. It runs in a worker thread,
reports progress and checks for cancellation through the :class:`JobContext`, and
returns layers bottom first. It never touches sockets or the protocol.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Stable error codes that engines raise (see shared/PROTOCOL.md for the full list).
UNSUPPORTED_OP = "unsupported_op"
BAD_PARAMS = "bad_params"
BAD_INPUT = "bad_input"
ENGINE_FAILED = "engine_failed"
OUT_OF_MEMORY = "out_of_memory"
MODEL_MISSING = "model_missing"


class EngineError(Exception):
    """A failure the user can act on: ``code`` is stable, ``message`` says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JobCancelled(Exception):
    """Raised inside an engine by :meth:`JobContext.check_cancelled` once a cancel arrives."""


@dataclass(frozen=True)
class InputImage:
    """An image a client sent with a job, placed at (x, y) in document coordinates."""

    name: str
    pixels: np.ndarray  # (height, width, 4) uint8, sRGB, not premultiplied
    x: int = 0
    y: int = 0

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def required_input(request: JobRequest, name: str) -> InputImage:
    """The job's input ``name``, checked to be (height, width, 4) uint8 RGBA."""
    source = request.inputs.get(name)
    if source is None:
        raise EngineError(BAD_INPUT, f"{request.op} needs an input image named {name!r}")
    pixels = np.asarray(source.pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        raise EngineError(BAD_INPUT, "the input must be (height, width, 4) uint8 RGBA")
    return source


@dataclass(frozen=True)
class JobRequest:
    """The whole of one job as a plain object: what the client asked for, validated.

    ``params`` holds the op's parameters with defaults filled in (see
    ``layerbridge.protocol``); ``layers`` there is an int or ``"auto"``.
    """

    job: str
    op: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, InputImage] = field(default_factory=dict)


@dataclass
class Layer:
    """One RGBA layer: ``pixels`` (h, w, 4) uint8, not premultiplied, placed at (x, y)."""

    name: str
    pixels: np.ndarray
    x: int = 0
    y: int = 0


class JobContext:
    """What an engine may call while it runs: progress reports and cancel checks.

    ``report`` is called from the engine's thread; the server makes it thread-safe.
    """

    def __init__(self, report: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._report = report or (lambda event: None)
        self._cancel = threading.Event()
        self.layer_count: int | None = None
        #: Counts an engine reports for the job's ``done.timings`` (e.g. the diffusion
        #: engine's ``forwards_computed`` and ``forwards_skipped``).
        self.stats: dict[str, int] = {}

    def set_layer_count(self, count: int) -> None:
        """Announce how many layers ``run`` will yield, so each can be sent the moment it
        is ready (a layer message carries the count). Without it the server holds the
        layers until the engine is done."""
        self.layer_count = int(count)

    def progress(
        self,
        fraction: float,
        stage: str,
        step: int | None = None,
        steps: int | None = None,
    ) -> None:
        """Report that ``fraction`` (0..1) of the job is done, in ``stage``."""
        event: dict[str, Any] = {"fraction": min(max(float(fraction), 0.0), 1.0), "stage": stage}
        if step is not None and steps is not None:
            event["step"], event["steps"] = int(step), int(steps)
        self._report(event)

    def preview(self, pixels: np.ndarray) -> None:
        """Offer a full-document RGBA preview (e.g. the generated image before decomposing)."""
        self._report({"preview": pixels})

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled; call it at every step."""
        if self._cancel.is_set():
            raise JobCancelled()


class Engine(ABC):
    """An engine: a name, the ops it supports, and one entry point per job."""

    name: str = ""
    #: Every op the protocol knows; an engine answers the ones it cannot do with UNSUPPORTED_OP.
    ops: tuple[str, ...] = ()
    #: Layer counts an engine accepts for ``layers``.
    min_layers: int = 1
    max_layers: int = 10
    #: Model resolutions, where the engine has any (diffusion buckets).
    resolutions: tuple[int, ...] = ()

    def warm_up(self) -> None:
        """Do heavy imports, JIT compilation and model loading once, before the first job."""

    def unsupported_message(self, op: str) -> str:
        """Why this engine cannot run ``op`` and what would: shown to the user as is."""
        return f"the {self.name} engine cannot run {op!r}; it runs {', '.join(self.ops)}"

    @abstractmethod
    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        """Yield the job's layers bottom first, each as soon as it is final.

        Layers are at document size and position (the server trims them to their
        alpha bounds). Raise :class:`EngineError` for failures the user can fix.
        """


def create_engine(name: str, **options: Any) -> Engine:
    """Build the engine called ``name`` (``classic``, ``qwen`` or ``tiny``)."""
    if name == "classic":
        from layerbridge.engines.classic import ClassicEngine

        return ClassicEngine(**options)
    if name == "qwen":
        from layerbridge.engines.diffusion import DiffusionEngine

        return DiffusionEngine.from_pretrained(**options)
    if name == "tiny":
        from layerbridge.engines.diffusion import DiffusionEngine

        return DiffusionEngine.tiny(**options)
    raise ValueError(f"unknown engine {name!r}: choose classic, qwen or tiny")
