"""LayerBridge protocol v1, sans I/O: messages in, events out, no sockets.

This module is the single place that knows the wire format (``shared/PROTOCOL.md``), in
both directions. The asyncio server, the synchronous client used by the GIMP plug-in and
the tests all drive it. It uses the standard library only (and :mod:`layerbridge.types`,
which does too), so the GIMP plug-in can ship a copy.

A connection alternates JSON text frames and, after a message that announces them,
binary frames of raw RGBA8 pixels. :class:`ServerConnection` turns what a client sends
into :class:`Hello`, :class:`Submit`, :class:`Cancel` and :class:`Fetch` events and
raises :class:`ProtocolError` for anything malformed; :class:`ClientConnection` builds
a client's frames and turns the server's frames into message dicts. Every message either
side sends is a typed :class:`Message` (:class:`WelcomeMessage`, :class:`LayerMessage`,
:class:`SubmitMessage`, ...) turned into text by the one encoder, :func:`encode`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from layerbridge.types import (
    OPS,
    ErrorCode,
    GenerateParams,
    LayerBridgeError,
    LayerCount,
    OpParams,
    param_names,
    params_class,
    quoted,
)

PROTOCOL_VERSION = 1
BINARY_MESSAGES = ("layer", "preview")  # server messages followed by one binary frame
MAX_TEXT_BYTES = 64 * 1024
MAX_JOB_ID_LENGTH = 128
MAX_PROMPT_LENGTH = 4000
MAX_COORDINATE = 1 << 20


# Each code by its name as well (``protocol.BAD_PARAMS``), for code written before the enum;
# taken from the enum, so the codes are still listed once.
globals().update(ErrorCode.__members__)
if TYPE_CHECKING:

    def __getattr__(name: str) -> ErrorCode: ...


_JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")
# A client's key to its jobs (identity.new_secret makes 43 of these characters).
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,128}")


class ProtocolError(LayerBridgeError):
    """Something a peer sent that breaks the protocol; answered with an ``error`` message."""

    def __init__(self, code: ErrorCode | str, message: str, job: str | None = None) -> None:
        super().__init__(code, message)
        self.job = job

    def to_error(self) -> ErrorMessage:
        return ErrorMessage(self.code, self.message, self.job)

    def to_message(self) -> dict[str, Any]:
        """The ``error`` message as its wire dict."""
        return self.to_error().to_wire()


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


@dataclass(frozen=True)
class Message:
    """A message either side sends. Its fields are its wire keys, in wire order, after
    ``type``; a field whose default is None is left out while it is None."""

    type: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None and spec.default is None:
                continue
            wire[spec.name] = _wire_value(value)
        return wire


def _wire_value(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_wire()
    if isinstance(value, WireRecord):  # like a message: an unset optional key is left out
        return {spec.name: _wire_value(getattr(value, spec.name)) for spec in fields(value)
                if not (getattr(value, spec.name) is None and spec.default is None)}
    if isinstance(value, (list, tuple)):
        return [_wire_value(item) for item in value]
    return value


@dataclass(frozen=True)
class WireRecord:
    """A JSON object nested in a message: its fields are its keys, in order."""


# server -> client


@dataclass(frozen=True)
class LayerRange(WireRecord):
    min: int
    max: int


@dataclass(frozen=True)
class Capabilities(WireRecord):
    ops: list[str]
    max_pixels: int
    layers: LayerRange
    resolutions: list[int]
    max_frame_bytes: int
    result_ttl_s: float
    #: Jobs the server runs at once (one per worker of a pool); absent from older servers.
    workers: int = 1


@dataclass(frozen=True)
class WelcomeMessage(Message):
    type: ClassVar[str] = "welcome"
    protocol: int
    server: str
    engine: str
    capabilities: Capabilities
    #: The client's key to its jobs across reconnects (send it back in ``hello``).
    secret: str


@dataclass(frozen=True)
class QueuedMessage(Message):
    type: ClassVar[str] = "queued"
    job: str
    position: int


@dataclass(frozen=True)
class ProgressMessage(Message):
    type: ClassVar[str] = "progress"
    job: str
    fraction: float
    stage: str
    step: int | None = None
    steps: int | None = None


@dataclass(frozen=True)
class PreviewMessage(Message):
    """The header of a full-document preview; its RGBA8 pixels follow as one binary frame."""

    type: ClassVar[str] = "preview"
    job: str
    width: int
    height: int


@dataclass(frozen=True)
class LayerMessage(Message):
    """The header of one layer; its RGBA8 pixels follow as one binary frame."""

    type: ClassVar[str] = "layer"
    job: str
    index: int
    count: int
    name: str
    x: int
    y: int
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class Timings(WireRecord):
    queued_s: float
    run_s: float
    total_s: float
    #: Diffusion engines: transformer forwards that ran every block, and those a step
    #: cache served (left out for engines without a transformer).
    forwards_computed: int | None = None
    forwards_skipped: int | None = None


@dataclass(frozen=True)
class DoneMessage(Message):
    type: ClassVar[str] = "done"
    job: str
    width: int
    height: int
    layers: int
    timings: Timings
    saved: str | None = None


@dataclass(frozen=True)
class CancelledMessage(Message):
    type: ClassVar[str] = "cancelled"
    job: str


@dataclass(frozen=True)
class ErrorMessage(Message):
    type: ClassVar[str] = "error"
    code: ErrorCode | str
    message: str
    job: str | None = None


# client -> server


@dataclass(frozen=True)
class HelloMessage(Message):
    type: ClassVar[str] = "hello"
    client: str
    token: str | None = None
    protocol: int = PROTOCOL_VERSION
    #: The ``secret`` of an earlier ``welcome``: this client again, with its jobs.
    secret: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "protocol": self.protocol, "client": self.client}
        if self.token:
            wire["token"] = self.token
        if self.secret:
            wire["secret"] = self.secret
        return wire


@dataclass(frozen=True)
class InputSpec(WireRecord):
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
class SubmitMessage(Message):
    type: ClassVar[str] = "submit"
    job: str
    op: str
    params: Mapping[str, Any]
    inputs: list[InputSpec]

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        wire["params"] = dict(self.params)
        return wire


@dataclass(frozen=True)
class CancelMessage(Message):
    type: ClassVar[str] = "cancel"
    job: str


@dataclass(frozen=True)
class FetchMessage(Message):
    type: ClassVar[str] = "fetch"
    job: str


def encode(message: Message | Mapping[str, Any]) -> str:
    """One JSON text frame: the one encoder of every message (a plain dict is taken as is,
    for tests that forge frames)."""
    wire = message.to_wire() if isinstance(message, Message) else message
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def error_message(code: ErrorCode | str, message: str, job: str | None = None) -> dict[str, Any]:
    """An ``error`` message as its wire dict."""
    return ErrorMessage(code, message, job).to_wire()


def decode(text: str | bytes) -> dict[str, Any]:
    """Parse one JSON text frame into a message dict with a string ``type``."""
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    if size > MAX_TEXT_BYTES:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"text message of {size} bytes is over the {MAX_TEXT_BYTES} byte limit; "
            "send pixels as binary frames",
        )
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(
            ErrorCode.BAD_JSON, f"message is not valid JSON ({exc}); send one JSON object"
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, 'a message must be a JSON object with a string "type"'
        )
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
    """One op parameter's rule: what values pass, a hint, the ops that cannot go without it.

    Which ops take it and its default are the params classes' (:mod:`layerbridge.types`).
    """

    check: Callable[[Any], bool]
    hint: str
    required: tuple[str, ...] = ()

    def ops(self, name: str) -> tuple[str, ...]:
        return tuple(op for op in OPS if name in param_names(op))


PARAMS: dict[str, Param] = {
    "prompt": Param(
        _text(MAX_PROMPT_LENGTH),
        f"a string of at most {MAX_PROMPT_LENGTH} characters",
        required=("generate", "regenerate"),
    ),
    "layers": Param(lambda v: v == "auto" or _is_int(v), 'an integer or "auto"'),
    "seed": Param(
        lambda v: v is None or _int_in(0, 2**63 - 1)(v),
        "an integer from 0 to 2**63-1, or null for a random seed",
    ),
    "steps": Param(
        lambda v: v is None or _int_in(1, 200)(v),
        "an integer from 1 to 200, or null for the engine's default",
    ),
    "width": Param(_int_in(64, 1 << 14), "an integer from 64 to 16384"),
    "height": Param(_int_in(64, 1 << 14), "an integer from 64 to 16384"),
    "resolution": Param(
        lambda v: v is None or _is_int(v),
        "one of the server's resolutions (welcome.capabilities.resolutions)",
    ),
    "negative_prompt": Param(
        lambda v: v is None or _text(MAX_PROMPT_LENGTH)(v),
        f"a string of at most {MAX_PROMPT_LENGTH} characters",
    ),
    "guidance": Param(
        lambda v: v is None or _number_in(0.0, 30.0)(v),
        "a number from 0 to 30 (true CFG scale), or null for the default",
    ),
    "save": Param(
        lambda v: v is None or _is_save_name(v),
        "a plain file name ending in .psd or .ora: ASCII letters, digits, spaces and "
        "_ . ( ) -, not starting with a dot or a space, at most 150 characters (no folders), "
        "written into the server's output folder",
    ),
}


def _is_save_name(value: Any) -> bool:
    """The writer's own rule (export.check_save_name), so a name that passes here is one
    the writer takes. Imported here, not at the top: the GIMP plug-in ships this module
    alone and never validates params."""
    from layerbridge.export import check_save_name

    try:
        check_save_name(value)
    except ValueError:
        return False
    return True


INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # op: (required inputs, optional inputs)
    "decompose": (("image",), ()),
    "generate": ((), ()),
    "regenerate": (("layer",), ("document", "mask")),
    "split": (("layer",), ()),
}


def validate_params(op: str, params: Any, limits: Limits, job: str | None = None) -> OpParams:
    """Check ``params`` for ``op``: the op's typed params, every default applied. The only
    place a parameter's value or a limit on it is checked."""
    if not isinstance(params, dict):
        raise ProtocolError(ErrorCode.BAD_PARAMS, '"params" must be a JSON object', job)
    cls = params_class(op)
    if cls is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_OP, f"unknown op {quoted(op)}; ops are {', '.join(OPS)}", job
        )
    known = [name for name in PARAMS if name in param_names(op)]
    for name in params:
        if name not in known:
            raise ProtocolError(
                ErrorCode.BAD_PARAMS,
                f"op {quoted(op)} takes no parameter {quoted(name)}; it takes {', '.join(known)}",
                job,
            )
    for name in known:
        spec = PARAMS[name]
        if name not in params:
            if op in spec.required:
                raise ProtocolError(
                    ErrorCode.BAD_PARAMS, f"op {quoted(op)} needs {quoted(name)}: {spec.hint}", job
                )
            continue
        value = params[name]
        if not spec.check(value):
            raise ProtocolError(
                ErrorCode.BAD_PARAMS,
                f"{quoted(name)} must be {spec.hint}, not {quoted(value)}",
                job,
            )
    result = cls(**params)
    if op in PARAMS["prompt"].required and not result.prompt.strip():
        raise ProtocolError(ErrorCode.BAD_PARAMS, f"op {op!r} needs a non-empty 'prompt'", job)
    _check_layer_count(getattr(result, "layers", None), limits, job)
    if isinstance(result, GenerateParams):
        _check_pixels(result.width, result.height, limits, "the generated image", job)
    return result


def _check_layer_count(layers: LayerCount | None, limits: Limits, job: str | None) -> None:
    if layers is None or layers == "auto":
        return
    if not limits.min_layers <= layers <= limits.max_layers:
        raise ProtocolError(
            ErrorCode.TOO_MANY_LAYERS if layers > limits.max_layers else ErrorCode.BAD_PARAMS,
            f"'layers' is {layers}; this server makes {limits.min_layers} to "
            f'{limits.max_layers} layers, or "auto"',
            job,
        )


def _check_pixels(width: int, height: int, limits: Limits, what: str, job: str | None) -> None:
    if width * height > limits.max_pixels:
        raise ProtocolError(
            ErrorCode.TOO_MANY_PIXELS,
            f"{what} is {width}x{height} = {width * height} pixels; this server takes at most "
            f"{limits.max_pixels}: scale it down or start the server with a larger --max-pixels",
            job,
        )


# --- server side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    protocol: int
    client: str
    token: str | None = None
    secret: str | None = None
    user: str | None = None  # the named token's user, on a team server


@dataclass(frozen=True)
class Submit:
    job: str
    op: str
    params: OpParams
    inputs: list[tuple[InputSpec, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Cancel:
    job: str


@dataclass(frozen=True)
class Fetch:
    job: str


ClientEvent = Hello | Submit | Cancel | Fetch
#: A token check: good or not, or (good, the named token's user).
TokenCheck = Callable[[str | None], "bool | tuple[bool, str | None]"]


def _job_id(message: dict[str, Any]) -> str:
    job = message.get("job")
    if not isinstance(job, str) or len(job) > MAX_JOB_ID_LENGTH or not _JOB_ID.fullmatch(job):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f'"job" must be a client-chosen id of 1 to {MAX_JOB_ID_LENGTH} characters from '
            "A-Z a-z 0-9 _ . : - (a UUID is ideal)",
        )
    return job


def _input_spec(raw: Any, op: str, limits: Limits, job: str) -> InputSpec:
    required, optional = INPUTS[op]
    if not isinstance(raw, dict):
        raise ProtocolError(
            ErrorCode.BAD_INPUT, "each input must be an object {name, width, height, x, y}", job
        )
    name = raw.get("name")
    if name not in required + optional:
        allowed = ", ".join(required + optional) or "none"
        raise ProtocolError(
            ErrorCode.BAD_INPUT,
            f"op {quoted(op)} takes no input {quoted(name)}; it takes {allowed}",
            job,
        )
    for key in ("width", "height"):
        if not _int_in(1, 1 << 16)(raw.get(key)):
            raise ProtocolError(
                ErrorCode.BAD_INPUT,
                f"input {quoted(name)}: {key!r} must be a positive integer",
                job,
            )
    for key in ("x", "y"):
        if not _int_in(-MAX_COORDINATE, MAX_COORDINATE)(raw.get(key, 0)):
            raise ProtocolError(
                ErrorCode.BAD_INPUT, f"input {quoted(name)}: {key!r} must be an integer offset", job
            )
    spec = InputSpec(name, raw["width"], raw["height"], raw.get("x", 0), raw.get("y", 0))
    _check_pixels(spec.width, spec.height, limits, f"input {quoted(name)}", job)
    return spec


def parse_submit(message: dict[str, Any], limits: Limits) -> tuple[Submit, list[InputSpec]]:
    """Validate a ``submit`` message; return it (without pixels) and the inputs it announces."""
    job = _job_id(message)
    op = message.get("op")
    if op not in OPS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_OP, f"unknown op {quoted(op)}; ops are {', '.join(OPS)}", job
        )
    params = validate_params(op, message.get("params", {}), limits, job)
    raw_inputs = message.get("inputs", [])
    if not isinstance(raw_inputs, list):
        raise ProtocolError(ErrorCode.BAD_INPUT, '"inputs" must be a list', job)
    specs = [_input_spec(raw, op, limits, job) for raw in raw_inputs]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ProtocolError(ErrorCode.BAD_INPUT, f"an input name appears twice in {names}", job)
    missing = [name for name in INPUTS[op][0] if name not in names]
    if missing:
        raise ProtocolError(ErrorCode.BAD_INPUT, f"op {quoted(op)} needs input {missing[0]!r}", job)
    _check_canvas(specs, limits, job)
    return Submit(job, op, params), specs


def canvas_size(specs: list[InputSpec]) -> tuple[int, int] | None:
    """The document a ``layer`` input spans when no ``image`` or ``document`` says it:
    from the origin to the layer's far corner, offsets included."""
    named = {spec.name: spec for spec in specs}
    if "layer" not in named or "image" in named or "document" in named:
        return None
    layer = named["layer"]
    return max(1, layer.x + layer.width), max(1, layer.y + layer.height)


def _check_canvas(specs: list[InputSpec], limits: Limits, job: str) -> None:
    size = canvas_size(specs)
    if size is not None:
        layer = next(spec for spec in specs if spec.name == "layer")
        what = f"the canvas of the layer at ({layer.x}, {layer.y})"
        _check_pixels(size[0], size[1], limits, what, job)


class ServerConnection:
    """The server's view of one client connection, fed frame by frame.

    ``receive_text`` and ``receive_bytes`` return what a frame completes, in order:
    client events (a ``submit`` is complete once its last input frame arrived) and
    :class:`ProtocolError` objects to answer with an ``error``. Nothing is raised, and
    after an error the connection stays usable: binary frames that follow a refused text
    frame (a refused submit's inputs) are dropped quietly until the next text frame, so a
    refusal costs the client exactly one error.

    ``check_token(token)`` returns whether the token is good, or ``(good, user)`` where a
    named token names its user. ``admit(submit, specs)`` may refuse a valid submit before
    its input frames arrive (the server's own limits); it returns the error or None.
    """

    def __init__(
        self,
        limits: Limits,
        check_token: TokenCheck | None = None,
        admit: Callable[[Submit, list[InputSpec]], ProtocolError | None] | None = None,
    ):
        self.limits = limits
        self.client: str | None = None
        self._check_token = check_token or (lambda given: True)
        self._admit = admit or (lambda submit, specs: None)
        self._pending: Submit | None = None
        self._expected: list[InputSpec] = []
        self._received: list[tuple[InputSpec, bytes]] = []
        self._discarding = False

    @property
    def greeted(self) -> bool:
        return self.client is not None

    @property
    def pending_bytes(self) -> int:
        """Input pixels held for a submit whose last frame has not arrived yet."""
        return sum(len(data) for _, data in self._received)

    def receive_text(self, text: str) -> list[ClientEvent | ProtocolError]:
        out: list[ClientEvent | ProtocolError] = []
        if self._pending is not None:
            out.append(
                ProtocolError(
                    ErrorCode.MISSING_BINARY,
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
            # Whatever this text announced (a refused submit's inputs) is not answered
            # again: one refusal, one error.
            self._discarding = True
        return out

    def receive_bytes(self, data: bytes) -> list[ClientEvent | ProtocolError]:
        if self._discarding:
            return []
        if not self.greeted:
            return [ProtocolError(ErrorCode.HELLO_REQUIRED, 'send "hello" before any binary frame')]
        if self._pending is None:
            return [
                ProtocolError(
                    ErrorCode.UNEXPECTED_BINARY,
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
                    ErrorCode.WRONG_BYTE_COUNT,
                    f"input {quoted(spec.name)} is {spec.width}x{spec.height} RGBA8, "
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
            if self.greeted:
                raise ProtocolError(
                    ErrorCode.BAD_MESSAGE,
                    '"hello" was already sent on this connection; to start over, open a new one',
                )
            return [self._hello(message)]
        if not self.greeted:
            job = message.get("job")
            valid = (  # echo only a real id
                isinstance(job, str)
                and len(job) <= MAX_JOB_ID_LENGTH
                and _JOB_ID.fullmatch(job) is not None
            )
            raise ProtocolError(
                ErrorCode.HELLO_REQUIRED,
                f'send "hello" before {quoted(kind)}',
                job if valid else None,
            )
        if kind == "submit":
            submit, specs = parse_submit(message, self.limits)
            refusal = self._admit(submit, specs)
            if refusal is not None:
                raise refusal
            if not specs:
                return [submit]
            self._pending, self._expected, self._received = submit, specs, []
            return []
        if kind == "cancel":
            return [Cancel(_job_id(message))]
        if kind == "fetch":
            return [Fetch(_job_id(message))]
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {quoted(kind)}; clients send hello, submit, cancel, fetch",
        )

    def _hello(self, message: dict[str, Any]) -> Hello:
        version, client = message.get("protocol"), message.get("client")
        if not _is_int(version) or version != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.PROTOCOL_MISMATCH,
                f"this server speaks LayerBridge protocol {PROTOCOL_VERSION}, the client "
                f"{quoted(version)}: update the plug-in and the server to the same release",
            )
        if not isinstance(client, str) or not client or len(client) > 200:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE, '"client" must name the client, e.g. "gimp/0.1.0"'
            )
        secret = message.get("secret")
        if secret is not None and not (isinstance(secret, str) and _SECRET.fullmatch(secret)):
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                '"secret" must be the secret this server sent in "welcome" (32 to 128 '
                "characters of A-Z a-z 0-9 _ -); leave it out to start afresh",
            )
        token = message.get("token")
        token = token if isinstance(token, str) else None
        checked = self._check_token(token)
        good, user = checked if isinstance(checked, tuple) else (checked, None)
        if not good:
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                "wrong or missing token: copy the token the server printed at start into the "
                "plug-in's settings",
            )
        self.client = client
        return Hello(version, client, token, secret, user)

    def _reset_pending(self, discard_rest: bool = False) -> None:
        self._discarding = discard_rest and bool(self._expected)
        self._pending, self._expected, self._received = None, [], []


# --- client side ----------------------------------------------------------------------


def submit_frames(
    job: str,
    op: str,
    params: Mapping[str, Any],
    inputs: list[tuple[InputSpec, bytes]] | tuple[()] = (),
) -> list[str | bytes]:
    """The frames of one ``submit``: its JSON, then one binary frame per input, in order."""
    specs = [spec for spec, _ in inputs]
    frames: list[str | bytes] = [encode(SubmitMessage(job, op, params, specs))]
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
                ErrorCode.MISSING_BINARY,
                f"the server sent text after a "
                f"{quoted(self._header['type'])} header instead of its pixels",
            )
        message = decode(frame)
        if message["type"] in BINARY_MESSAGES:
            self._header = message
            return []
        return [message]

    def _binary(self, data: bytes) -> list[dict[str, Any]]:
        header, self._header = self._header, None
        if header is None:
            raise ProtocolError(
                ErrorCode.UNEXPECTED_BINARY, "the server sent pixels with no header"
            )
        expected = int(header["width"]) * int(header["height"]) * 4
        if len(data) != expected:
            raise ProtocolError(
                ErrorCode.WRONG_BYTE_COUNT,
                f"{header['type']} frame has {len(data)} bytes, its header says {expected}",
            )
        return [{**header, "data": data}]
