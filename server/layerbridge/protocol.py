"""LayerBridge protocol v1, sans I/O: messages in, events out, no sockets.

This module is the single place that knows the wire format (``shared/PROTOCOL.md``).
The asyncio server, the synchronous client used by the GIMP plug-in and the tests all
drive it. It uses the standard library only, so the GIMP plug-in can ship a copy.

A connection alternates JSON text frames and, after a message that announces them,
binary frames of raw RGBA8 pixels. :class:`ServerConnection` turns what a client sends
into :class:`Hello`, :class:`Submit`, :class:`Cancel` and :class:`Fetch` events and
raises :class:`ProtocolError` for anything malformed; :class:`ClientConnection` builds
a client's frames and turns the server's frames into message dicts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
OPS = ("decompose", "generate", "regenerate", "split")
BINARY_MESSAGES = ("layer", "preview")  # server messages followed by one binary frame
MAX_TEXT_BYTES = 64 * 1024
MAX_JOB_ID_LENGTH = 128
MAX_PROMPT_LENGTH = 4000
MAX_COORDINATE = 1 << 20

# Stable error codes. Clients may switch on them; the message is for people.
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

_JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")
# A file name the server may write into its output folder: no folders, no dot first.
_SAVE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9 _.()-]{0,150}\.(psd|ora)$", re.IGNORECASE)


class ProtocolError(Exception):
    """Something a peer sent that breaks the protocol; answered with an ``error`` message."""

    def __init__(self, code: str, message: str, job: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.job = job

    def to_message(self) -> dict[str, Any]:
        return error_message(self.code, self.message, self.job)


@dataclass(frozen=True)
class Limits:
    """What one server accepts; announced in ``welcome`` so clients can check up front."""

    max_pixels: int = 4096 * 4096
    min_layers: int = 1
    max_layers: int = 10

    @property
    def max_frame_bytes(self) -> int:
        return self.max_pixels * 4


# --- messages -------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """One JSON text frame."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def error_message(code: str, message: str, job: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if job is not None:
        msg["job"] = job
    return msg


def decode(text: str | bytes) -> dict[str, Any]:
    """Parse one JSON text frame into a message dict with a string ``type``."""
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    if size > MAX_TEXT_BYTES:
        raise ProtocolError(
            BAD_MESSAGE,
            f"text message of {size} bytes is over the {MAX_TEXT_BYTES} byte limit; "
            "send pixels as binary frames",
        )
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(
            BAD_JSON, f"message is not valid JSON ({exc}); send one JSON object"
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(BAD_MESSAGE, 'a message must be a JSON object with a string "type"')
    return message


# --- parameters -----------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and lo <= v <= hi


def _text(max_len: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= max_len


def _number_in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and lo <= v <= hi
    )


@dataclass(frozen=True)
class Param:
    """One op parameter: which ops take it, what values pass, its default, a hint."""

    ops: tuple[str, ...]
    check: Callable[[Any], bool]
    hint: str
    default: Any = None
    required: tuple[str, ...] = ()


PARAMS: dict[str, Param] = {
    "prompt": Param(
        OPS,
        _text(MAX_PROMPT_LENGTH),
        f"a string of at most {MAX_PROMPT_LENGTH} characters",
        default="",
        required=("generate", "regenerate"),
    ),
    "layers": Param(
        ("decompose", "generate", "split"),
        lambda v: v == "auto" or _is_int(v),
        'an integer or "auto"',
        default="auto",
    ),
    "seed": Param(
        OPS,
        lambda v: v is None or _int_in(0, 2**63 - 1)(v),
        "an integer from 0 to 2**63-1, or null for a random seed",
    ),
    "steps": Param(
        OPS,
        lambda v: v is None or _int_in(1, 200)(v),
        "an integer from 1 to 200, or null for the engine's default",
    ),
    "width": Param(
        ("generate",), _int_in(64, 1 << 14), "an integer from 64 to 16384", default=1024
    ),
    "height": Param(
        ("generate",), _int_in(64, 1 << 14), "an integer from 64 to 16384", default=1024
    ),
    "resolution": Param(
        OPS,
        lambda v: v is None or _is_int(v),
        "one of the server's resolutions (welcome.capabilities.resolutions)",
    ),
    "negative_prompt": Param(
        OPS,
        lambda v: v is None or _text(MAX_PROMPT_LENGTH)(v),
        f"a string of at most {MAX_PROMPT_LENGTH} characters",
    ),
    "guidance": Param(
        OPS,
        lambda v: v is None or _number_in(0.0, 30.0)(v),
        "a number from 0 to 30 (true CFG scale), or null for the default",
    ),
    "save": Param(
        OPS,
        lambda v: v is None or (isinstance(v, str) and bool(_SAVE_NAME.fullmatch(v))),
        "a plain file name ending in .psd or .ora (no folders), written into the "
        "server's output folder",
    ),
}

INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # op: (required inputs, optional inputs)
    "decompose": (("image",), ()),
    "generate": ((), ()),
    "regenerate": (("layer",), ("document", "mask")),
    "split": (("layer",), ()),
}


def validate_params(op: str, params: Any, limits: Limits, job: str | None = None) -> dict:
    """Check ``params`` for ``op`` and return them with defaults filled in."""
    if not isinstance(params, dict):
        raise ProtocolError(BAD_PARAMS, '"params" must be a JSON object', job)
    known = [name for name, p in PARAMS.items() if op in p.ops]
    for name in params:
        if name not in known:
            raise ProtocolError(
                BAD_PARAMS,
                f"op {op!r} takes no parameter {name!r}; it takes {', '.join(known)}",
                job,
            )
    result: dict[str, Any] = {}
    for name in known:
        spec = PARAMS[name]
        if name not in params:
            if op in spec.required:
                raise ProtocolError(BAD_PARAMS, f"op {op!r} needs {name!r}: {spec.hint}", job)
            result[name] = spec.default
            continue
        value = params[name]
        if not spec.check(value):
            raise ProtocolError(BAD_PARAMS, f"{name!r} must be {spec.hint}, not {value!r}", job)
        result[name] = value
    if op in PARAMS["prompt"].required and not result["prompt"].strip():
        raise ProtocolError(BAD_PARAMS, f"op {op!r} needs a non-empty 'prompt'", job)
    _check_layer_count(result.get("layers"), limits, job)
    if op == "generate":
        _check_pixels(result["width"], result["height"], limits, "the generated image", job)
    return result


def _check_layer_count(layers: Any, limits: Limits, job: str | None) -> None:
    if layers is None or layers == "auto":
        return
    if not limits.min_layers <= layers <= limits.max_layers:
        raise ProtocolError(
            TOO_MANY_LAYERS if layers > limits.max_layers else BAD_PARAMS,
            f"'layers' is {layers}; this server makes {limits.min_layers} to "
            f'{limits.max_layers} layers, or "auto"',
            job,
        )


def _check_pixels(width: int, height: int, limits: Limits, what: str, job: str | None) -> None:
    if width * height > limits.max_pixels:
        raise ProtocolError(
            TOO_MANY_PIXELS,
            f"{what} is {width}x{height} = {width * height} pixels; this server takes at most "
            f"{limits.max_pixels}: scale it down or start the server with a larger --max-pixels",
            job,
        )


# --- server side ----------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """An input image announced by ``submit``: a name, a size and a document offset."""

    name: str
    width: int
    height: int
    x: int = 0
    y: int = 0

    @property
    def byte_count(self) -> int:
        return self.width * self.height * 4


@dataclass(frozen=True)
class Hello:
    protocol: int
    client: str
    token: str | None = None


@dataclass(frozen=True)
class Submit:
    job: str
    op: str
    params: dict[str, Any]
    inputs: list[tuple[InputSpec, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Cancel:
    job: str


@dataclass(frozen=True)
class Fetch:
    job: str


ClientEvent = Hello | Submit | Cancel | Fetch


def _job_id(message: dict[str, Any]) -> str:
    job = message.get("job")
    if not isinstance(job, str) or len(job) > MAX_JOB_ID_LENGTH or not _JOB_ID.fullmatch(job):
        raise ProtocolError(
            BAD_MESSAGE,
            f'"job" must be a client-chosen id of 1 to {MAX_JOB_ID_LENGTH} characters from '
            "A-Z a-z 0-9 _ . : - (a UUID is ideal)",
        )
    return job


def _input_spec(raw: Any, op: str, limits: Limits, job: str) -> InputSpec:
    required, optional = INPUTS[op]
    if not isinstance(raw, dict):
        raise ProtocolError(
            BAD_INPUT, "each input must be an object {name, width, height, x, y}", job
        )
    name = raw.get("name")
    if name not in required + optional:
        allowed = ", ".join(required + optional) or "none"
        raise ProtocolError(
            BAD_INPUT, f"op {op!r} takes no input {name!r}; it takes {allowed}", job
        )
    for key in ("width", "height"):
        if not _int_in(1, 1 << 16)(raw.get(key)):
            raise ProtocolError(
                BAD_INPUT, f"input {name!r}: {key!r} must be a positive integer", job
            )
    for key in ("x", "y"):
        if not _int_in(-MAX_COORDINATE, MAX_COORDINATE)(raw.get(key, 0)):
            raise ProtocolError(
                BAD_INPUT, f"input {name!r}: {key!r} must be an integer offset", job
            )
    spec = InputSpec(name, raw["width"], raw["height"], raw.get("x", 0), raw.get("y", 0))
    _check_pixels(spec.width, spec.height, limits, f"input {name!r}", job)
    return spec


def parse_submit(message: dict[str, Any], limits: Limits) -> tuple[Submit, list[InputSpec]]:
    """Validate a ``submit`` message; return it (without pixels) and the inputs it announces."""
    job = _job_id(message)
    op = message.get("op")
    if op not in OPS:
        raise ProtocolError(UNKNOWN_OP, f"unknown op {op!r}; ops are {', '.join(OPS)}", job)
    params = validate_params(op, message.get("params", {}), limits, job)
    raw_inputs = message.get("inputs", [])
    if not isinstance(raw_inputs, list):
        raise ProtocolError(BAD_INPUT, '"inputs" must be a list', job)
    specs = [_input_spec(raw, op, limits, job) for raw in raw_inputs]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ProtocolError(BAD_INPUT, f"an input name appears twice in {names}", job)
    missing = [name for name in INPUTS[op][0] if name not in names]
    if missing:
        raise ProtocolError(BAD_INPUT, f"op {op!r} needs input {missing[0]!r}", job)
    return Submit(job, op, params), specs


class ServerConnection:
    """The server's view of one client connection, fed frame by frame.

    ``receive_text`` and ``receive_bytes`` return what a frame completes, in order:
    client events (a ``submit`` is complete once its last input frame arrived) and
    :class:`ProtocolError` objects to answer with an ``error``. Nothing is raised, and
    after an error the connection stays usable: the remaining binary frames of a
    rejected submit are dropped until the next text frame.
    """

    def __init__(self, limits: Limits, check_token: Callable[[str | None], bool] | None = None):
        self.limits = limits
        self.client: str | None = None
        self._check_token = check_token or (lambda given: True)
        self._pending: Submit | None = None
        self._expected: list[InputSpec] = []
        self._received: list[tuple[InputSpec, bytes]] = []
        self._discarding = False

    @property
    def greeted(self) -> bool:
        return self.client is not None

    def receive_text(self, text: str) -> list[ClientEvent | ProtocolError]:
        out: list[ClientEvent | ProtocolError] = []
        if self._pending is not None:
            out.append(
                ProtocolError(
                    MISSING_BINARY,
                    f"submit {self._pending.job!r} announced "
                    f"{len(self._expected) + len(self._received)} input frame(s) but a text frame "
                    f"came after {len(self._received)}; "
                    "send every input's binary frame right after its submit",
                    self._pending.job,
                )
            )
        self._reset_pending()
        try:
            out.extend(self._dispatch(decode(text)))
        except ProtocolError as error:
            out.append(error)
        return out

    def receive_bytes(self, data: bytes) -> list[ClientEvent | ProtocolError]:
        if self._discarding:
            return []
        if self._pending is None:
            return [
                ProtocolError(
                    UNEXPECTED_BINARY,
                    "a binary frame arrived that no submit announced; "
                    "send submit with its inputs first",
                )
            ]
        spec = self._expected.pop(0)
        if len(data) != spec.byte_count:
            job = self._pending.job
            self._reset_pending(discard_rest=True)
            return [
                ProtocolError(
                    WRONG_BYTE_COUNT,
                    f"input {spec.name!r} is {spec.width}x{spec.height} RGBA8, "
                    f"so its frame must be "
                    f"{spec.byte_count} bytes, not {len(data)}",
                    job,
                )
            ]
        self._received.append((spec, bytes(data)))
        if self._expected:
            return []
        submit = Submit(self._pending.job, self._pending.op, self._pending.params, self._received)
        self._reset_pending()
        return [submit]

    def _dispatch(self, message: dict[str, Any]) -> list[ClientEvent]:
        kind = message["type"]
        if kind == "hello":
            return [self._hello(message)]
        if not self.greeted:
            job = message.get("job")
            valid = isinstance(job, str) and len(job) <= MAX_JOB_ID_LENGTH
            raise ProtocolError(
                HELLO_REQUIRED,
                f'send "hello" before {kind!r}',
                job if valid and _JOB_ID.fullmatch(job) else None,  # echo only a real id
            )
        if kind == "submit":
            submit, specs = parse_submit(message, self.limits)
            if not specs:
                return [submit]
            self._pending, self._expected, self._received = submit, specs, []
            return []
        if kind == "cancel":
            return [Cancel(_job_id(message))]
        if kind == "fetch":
            return [Fetch(_job_id(message))]
        raise ProtocolError(
            UNKNOWN_TYPE,
            f"unknown message type {kind!r}; clients send hello, submit, cancel, fetch",
        )

    def _hello(self, message: dict[str, Any]) -> Hello:
        version, client = message.get("protocol"), message.get("client")
        if not _is_int(version) or version != PROTOCOL_VERSION:
            raise ProtocolError(
                PROTOCOL_MISMATCH,
                f"this server speaks LayerBridge protocol {PROTOCOL_VERSION}, the client "
                f"{version!r}: update the plug-in and the server to the same release",
            )
        if not isinstance(client, str) or not client or len(client) > 200:
            raise ProtocolError(BAD_MESSAGE, '"client" must name the client, e.g. "gimp/0.1.0"')
        token = message.get("token")
        token = token if isinstance(token, str) else None
        if not self._check_token(token):
            raise ProtocolError(
                UNAUTHORIZED,
                "wrong or missing token: copy the token the server printed at start into the "
                "plug-in's settings",
            )
        self.client = client
        return Hello(version, client, token)

    def _reset_pending(self, discard_rest: bool = False) -> None:
        self._discarding = discard_rest and bool(self._expected)
        self._pending, self._expected, self._received = None, [], []


# --- client side ----------------------------------------------------------------------


def hello_message(client: str, token: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "hello", "protocol": PROTOCOL_VERSION, "client": client}
    if token:
        msg["token"] = token
    return msg


def submit_frames(
    job: str,
    op: str,
    params: dict[str, Any],
    inputs: list[tuple[InputSpec, bytes]] = (),  # type: ignore[assignment]
) -> list[str | bytes]:
    """The frames of one ``submit``: its JSON, then one binary frame per input, in order."""
    specs = [
        {"name": s.name, "width": s.width, "height": s.height, "x": s.x, "y": s.y}
        for s, _ in inputs
    ]
    frames: list[str | bytes] = [
        encode({"type": "submit", "job": job, "op": op, "params": params, "inputs": specs})
    ]
    for spec, data in inputs:
        if len(data) != spec.byte_count:
            raise ValueError(f"input {spec.name!r} has {len(data)} bytes, not {spec.byte_count}")
        frames.append(data)
    return frames


class ClientConnection:
    """A client's view of the server's frames: each call returns the complete messages.

    ``layer`` and ``preview`` messages are returned once their binary frame arrived,
    with the bytes under the key ``"data"``.
    """

    def __init__(self) -> None:
        self._header: dict[str, Any] | None = None

    def receive(self, frame: str | bytes) -> list[dict[str, Any]]:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            return self._binary(bytes(frame))
        if self._header is not None:
            raise ProtocolError(
                MISSING_BINARY,
                f"the server sent text after a "
                f"{self._header['type']!r} header instead of its pixels",
            )
        message = decode(frame)
        if message["type"] in BINARY_MESSAGES:
            self._header = message
            return []
        return [message]

    def _binary(self, data: bytes) -> list[dict[str, Any]]:
        header, self._header = self._header, None
        if header is None:
            raise ProtocolError(UNEXPECTED_BINARY, "the server sent pixels with no header")
        expected = int(header["width"]) * int(header["height"]) * 4
        if len(data) != expected:
            raise ProtocolError(
                WRONG_BYTE_COUNT,
                f"{header['type']} frame has {len(data)} bytes, its header says {expected}",
            )
        return [{**header, "data": data}]
