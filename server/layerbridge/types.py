"""The contracts every other module codes against: layers, params, states, error codes.

This module sits below everything else and imports nothing of ours; at run time it needs
the standard library only (numpy is named in annotations alone), because the GIMP
plug-in ships a copy of it beside ``protocol.py``.

- :class:`Layer` and :class:`InputImage`: pixels with a place in the document.
- :class:`DecomposeParams`, :class:`GenerateParams`, :class:`RegenerateParams`,
  :class:`SplitParams`: one op's parameters, built once by the protocol's validation with
  every default applied; engines read attributes and never re-apply defaults.
- :class:`ErrorCode`, :class:`JobState`, :class:`ElementKind`: the wire's fixed strings.
- :class:`LayerBridgeError`: the root of every error that carries a code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "OPS",
    "DecomposeParams",
    "ElementKind",
    "EngineError",
    "ErrorCode",
    "GenerateParams",
    "InputImage",
    "JobCancelled",
    "JobState",
    "Layer",
    "LayerBridgeError",
    "LayerCount",
    "OpParams",
    "Params",
    "RegenerateParams",
    "SplitParams",
    "is_out_of_memory",
    "out_of_memory_error",
    "params_class",
]


class WireEnum(str, Enum):
    """A string enum that prints, formats and serialises as its wire string."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ErrorCode(WireEnum):
    """Stable error codes (shared/PROTOCOL.md). Clients switch on them; messages are for
    people."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    HELLO_REQUIRED = "hello_required"
    PROTOCOL_MISMATCH = "protocol_mismatch"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_OP = "unknown_op"
    UNSUPPORTED_OP = "unsupported_op"
    BAD_PARAMS = "bad_params"
    BAD_INPUT = "bad_input"
    WRONG_BYTE_COUNT = "wrong_byte_count"
    UNEXPECTED_BINARY = "unexpected_binary"
    MISSING_BINARY = "missing_binary"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_MANY_LAYERS = "too_many_layers"
    QUEUE_FULL = "queue_full"
    TOO_MANY_JOBS = "too_many_jobs"
    TOO_MANY_FETCHES = "too_many_fetches"
    DUPLICATE_JOB = "duplicate_job"
    UNKNOWN_JOB = "unknown_job"
    ENGINE_FAILED = "engine_failed"
    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    MODEL_MISSING = "model_missing"
    SHUTTING_DOWN = "shutting_down"
    WORKER_LOST = "worker_lost"
    SERVER_BUSY = "server_busy"


class JobState(WireEnum):
    """Where a job is; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class ElementKind(WireEnum):
    """What a decomposed element is, which decides how it is peeled and grouped."""

    SHAPE = "shape"
    TEXT = "text"
    TEXTURE = "texture"


# --- errors ---------------------------------------------------------------------------


class LayerBridgeError(Exception):
    """A failure with a stable ``code`` and a ``message`` that says what to do."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def quoted(value: object, limit: int = 60) -> str:
    """A client's value as an error message shows it: its ``repr``, cut to ``limit``
    characters with the value's length, so a 50 KB value is never sent back (or logged)
    whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}... ({size} characters)"


class EngineError(LayerBridgeError):
    """A failure inside an engine that the user can act on."""


class JobCancelled(Exception):
    """Raised inside an engine at its next step once the job was cancelled (not an error)."""


OUT_OF_MEMORY_ADVICE = (
    "Try a smaller image or fewer layers, or start the server with a memory option "
    "(see `layerbridge serve --help`)"
)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's (CUDA) OutOfMemoryError or a host MemoryError, without importing torch."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def out_of_memory_error(exc: BaseException) -> EngineError:
    """The one error an out-of-memory failure becomes, wherever it is caught."""
    return EngineError(ErrorCode.OUT_OF_MEMORY, f"out of memory: {exc}. {OUT_OF_MEMORY_ADVICE}")


# --- pixels ---------------------------------------------------------------------------


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


@dataclass
class Layer:
    """One RGBA layer: ``pixels`` (h, w, 4) uint8, not premultiplied, placed at (x, y)."""

    name: str
    pixels: np.ndarray
    x: int = 0
    y: int = 0


# --- op parameters --------------------------------------------------------------------

OPS = ("decompose", "generate", "regenerate", "split")

#: ``layers``: a count, or "auto" for as many as the engine finds.
LayerCount = int | Literal["auto"]


@dataclass(frozen=True)
class Params(Mapping[str, Any]):
    """The parameters every op takes. The defaults here are the protocol's defaults.

    Read them as attributes. Read access by name (``params["seed"]``) is kept for code
    written against the plain-dict form; it is read-only.
    """

    op: ClassVar[str]
    prompt: str = ""
    seed: int | None = None  # None: the engine draws one (and logs it)
    steps: int | None = None  # None: the engine's default
    resolution: int | None = None  # None: the engine's default bucket
    negative_prompt: str | None = None
    guidance: float | None = None
    save: str | None = None  # a file name in the server's output folder

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class DecomposeParams(Params):
    op: ClassVar[str] = "decompose"
    layers: LayerCount = "auto"


@dataclass(frozen=True)
class SplitParams(Params):
    op: ClassVar[str] = "split"
    layers: LayerCount = "auto"


@dataclass(frozen=True)
class GenerateParams(Params):
    op: ClassVar[str] = "generate"
    layers: LayerCount = "auto"
    width: int = 1024
    height: int = 1024


@dataclass(frozen=True)
class RegenerateParams(Params):
    op: ClassVar[str] = "regenerate"


OpParams = DecomposeParams | GenerateParams | RegenerateParams | SplitParams

_PARAMS_BY_OP: dict[str, type[OpParams]] = {
    cls.op: cls for cls in (DecomposeParams, GenerateParams, RegenerateParams, SplitParams)
}


def params_class(op: str) -> type[OpParams] | None:
    """The params class of ``op``, or None for an op the protocol does not know."""
    return _PARAMS_BY_OP.get(op)


def param_names(op: str) -> tuple[str, ...]:
    """The parameter names ``op`` takes, in wire order."""
    cls = _PARAMS_BY_OP[op]
    return cls._names()
