"""The one interface every engine implements, and the job objects it sees.

An engine turns a :class:`JobRequest` into RGBA layers. It runs in a worker thread,
reports progress and checks for cancellation through the :class:`JobContext`, and
returns layers bottom first. It never touches sockets or the protocol.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from layerbridge.types import (
    OPS,
    EngineError,
    ErrorCode,
    InputImage,
    JobCancelled,
    Layer,
    OpParams,
    Params,
    params_class,
)

__all__ = [
    "Engine",
    "EngineError",
    "InputImage",
    "JobCancelled",
    "JobContext",
    "JobRequest",
    "Layer",
    "required_input",
]

# The codes engines raise, by their old names (the list itself is ``ErrorCode``).
UNSUPPORTED_OP = ErrorCode.UNSUPPORTED_OP
BAD_PARAMS = ErrorCode.BAD_PARAMS
BAD_INPUT = ErrorCode.BAD_INPUT
ENGINE_FAILED = ErrorCode.ENGINE_FAILED
OUT_OF_MEMORY = ErrorCode.OUT_OF_MEMORY
MODEL_MISSING = ErrorCode.MODEL_MISSING


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

    ``params`` are the op's typed params (:class:`~layerbridge.types.DecomposeParams`, ...)
    with every default applied, as the protocol's validation built them; engines read their
    attributes (``request.params.layers`` is an int or ``"auto"``). A plain mapping given
    here (a script or test calling an engine directly) becomes the op's params class with
    its defaults, unchecked.
    """

    job: str
    op: str
    params: OpParams = field(default_factory=lambda: cast(OpParams, {}))
    inputs: dict[str, InputImage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.params, Params):
            object.__setattr__(self, "params", typed_params(self.op, self.params))
        elif self.params.op != self.op:
            raise EngineError(
                ErrorCode.BAD_PARAMS, f"a {self.op} job got {type(self.params).__name__}"
            )


def typed_params(op: str, values: Mapping[str, Any]) -> OpParams:
    """``values`` as ``op``'s params class; an engine error for an unknown op or name."""
    cls = params_class(op)
    if cls is None:
        raise EngineError(
            ErrorCode.UNSUPPORTED_OP, f"unknown op {op!r}: the ops are {', '.join(OPS)}"
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise EngineError(ErrorCode.BAD_PARAMS, f"bad parameters for {op!r}: {exc}") from None


class JobContext:
    """What an engine may call while it runs: progress reports and cancel checks.

    ``report`` is called from the engine's thread; the server makes it thread-safe.
    """

    def __init__(self, report: Callable[[dict[str, Any]], object] | None = None) -> None:
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
    #: Jobs it runs at once: one for an engine in this process (one device), one per worker
    #: for a pool (:mod:`layerbridge.cluster`).
    workers: int = 1

    def warm_up(self) -> None:
        """Do heavy imports, JIT compilation and model loading once, before the first job."""

    def working_bytes(self, pixels: int) -> int:
        """Memory one job over ``pixels`` input pixels needs at its peak in the server's own
        processes, beyond its inputs and its layers: the server's memory budget reserves it
        before the job may start. 0 (the default) where a job's memory is not the server's
        (a pool's workers) or does not grow with the image (weights loaded once)."""
        return 0

    def unsupported_message(self, op: str) -> str:
        """Why this engine cannot run ``op`` and what would: shown to the user as is."""
        return f"the {self.name} engine cannot run {op!r}; it runs {', '.join(self.ops)}"

    @abstractmethod
    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        """Yield the job's layers bottom first, each as soon as it is final.

        Layers are at document size and position (the server trims them to their
        alpha bounds). Raise :class:`EngineError` for failures the user can fix.
        """
