"""The GIMP plug-in's host-free core: requests, the job runner, progress text, settings.

Nothing here imports GIMP. The plug-in's adapter (``layerbridge.py``) captures the document
into a :class:`JobRequest`, implements :class:`Host` with GIMP calls and hands both to
:func:`run_job`; the tests drive the same code with a fake host against a real server.

The connection itself is the product's own synchronous client (``layerbridge.client`` and
``layerbridge.protocol``): the installer copies them into the plug-in's folder, with the
websockets package, because GIMP's Python has no pip. The folder comes first on ``sys.path``
for GIMP's entry point and for the cancel watcher alike (a script's own folder does), and no
file in it is named ``layerbridge.py``, so ``import layerbridge`` finds the copy there (or,
in a checkout, the installed package).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from layerbridge import protocol
from layerbridge.client import (
    DEFAULT_URL,
    Client,
    ProtocolMismatch,
    ServerError,
    ServerUnavailable,
)
from layerbridge.stages import duration_text, remaining_seconds, stage_text

PLUGIN_VERSION = "0.1.0"
CLIENT_NAME = f"gimp/{PLUGIN_VERSION}"
START_COMMAND = "layerbridge serve"
SETTINGS_FILE = "layerbridge.json"


class JobFailed(Exception):
    """A job that did not finish; ``str()`` is the message to show in GIMP."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class JobRequest:
    """Everything one action sends, captured from the document when the job starts."""

    op: str
    params: dict[str, Any]
    inputs: list[tuple[protocol.InputSpec, bytes]] = field(default_factory=list)
    title: str = "LayerBridge"  # the layer group's name (the prompt, or "Decomposed")


@dataclass
class JobOutcome:
    job: str
    layers: list[dict[str, Any]]  # the ``layer`` messages, without their pixels
    done: dict[str, Any] | None
    cancelled: bool = False
    cancel_sent: bool = False


class Host(Protocol):
    """What the job runner asks of the editor; GIMP's adapter and the tests' fake implement it."""

    def show_progress(self, fraction: float | None, text: str) -> None:
        """``fraction`` None: keep the bar where it is, change the text."""

    def cancel_requested(self) -> bool:
        """True once the user asked to stop the job."""

    def add_layer(self, layer: dict[str, Any]) -> None:
        """Insert one received layer (``layer["data"]`` is RGBA8) above the previous one."""

    def show_preview(self, preview: dict[str, Any]) -> None:
        """Show the whole image the engine made (``preview["data"]`` is RGBA8) until the
        layers take its place."""


# --- requests ---------------------------------------------------------------------------


def seed_param(seed: int) -> int:
    """Dialogs show -1 for "a random seed". The plug-in picks it rather than the server, so
    the seed is in the job's record (the image's ``layerbridge-job`` parasite) to repeat it."""
    return random.randrange(2**31) if seed < 0 else seed


def layers_param(layers: int) -> int | str:
    """Dialogs show 0 for "as many as the image needs"; the protocol says "auto"."""
    return "auto" if layers <= 0 else layers


def tuning(steps: int = 0, resolution: int = 0) -> dict[str, int]:
    """Model steps and resolution; dialogs show 0 for "the server's default", sent as nothing."""
    params = {"steps": steps, "resolution": resolution}
    return {key: value for key, value in params.items() if value > 0}


def decompose_request(
    image: bytes,
    width: int,
    height: int,
    layers: int,
    seed: int,
    prompt: str = "",
    steps: int = 0,
    resolution: int = 0,
) -> JobRequest:
    params: dict[str, Any] = {"layers": layers_param(layers), "seed": seed_param(seed)}
    params.update(tuning(steps, resolution))
    if prompt.strip():
        params["prompt"] = prompt.strip()
    inputs = [(protocol.InputSpec("image", width, height), image)]
    return JobRequest("decompose", params, inputs, title=with_seed("Decomposed", params))


def generate_request(
    prompt: str,
    width: int,
    height: int,
    layers: int,
    seed: int,
    steps: int = 0,
    resolution: int = 0,
) -> JobRequest:
    params = {
        "prompt": prompt.strip(),
        "width": width,
        "height": height,
        "layers": layers_param(layers),
        "seed": seed_param(seed),
        **tuning(steps, resolution),
    }
    return JobRequest("generate", params, title=with_seed(group_title(prompt), params))


def split_request(
    layer: bytes,
    bounds: tuple[int, int, int, int],
    layers: int,
    seed: int,
    name: str,
    steps: int = 0,
    resolution: int = 0,
) -> JobRequest:
    x, y, width, height = bounds
    params = {"layers": layers_param(layers), "seed": seed_param(seed), **tuning(steps, resolution)}
    inputs = [(protocol.InputSpec("layer", width, height, x, y), layer)]
    return JobRequest("split", params, inputs, title=with_seed(f"{name} (split)", params))


def regenerate_request(
    prompt: str,
    seed: int,
    layer: bytes,
    bounds: tuple[int, int, int, int],
    document: tuple[bytes, int, int] | None = None,
    mask: bytes | None = None,
    steps: int = 0,
    resolution: int = 0,
) -> JobRequest:
    """``mask`` covers the layer's bounds: RGBA8 whose alpha is the selection."""
    x, y, width, height = bounds
    params = {"prompt": prompt.strip(), "seed": seed_param(seed), **tuning(steps, resolution)}
    inputs = [(protocol.InputSpec("layer", width, height, x, y), layer)]
    if document is not None:
        pixels, doc_width, doc_height = document
        inputs.append((protocol.InputSpec("document", doc_width, doc_height), pixels))
    if mask is not None:
        inputs.append((protocol.InputSpec("mask", width, height, x, y), mask))
    return JobRequest("regenerate", params, inputs, title=group_title(prompt))


def with_seed(title: str, params: dict[str, Any]) -> str:
    """The layer group's name says the seed: typed into the dialog, it repeats the result."""
    return f"{title} [seed {params['seed']}]"


def group_title(prompt: str, limit: int = 60) -> str:
    """A layer group's name from a prompt: one line, not too long."""
    text = " ".join(prompt.split()) or "LayerBridge"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def mask_from_selection(selection: bytes) -> bytes:
    """RGBA8 mask (white, alpha = selection) from one byte per pixel of selection value."""
    mask = bytearray(b"\xff") * (len(selection) * 4)
    mask[3::4] = selection
    return bytes(mask)


# --- running a job ----------------------------------------------------------------------


def progress_text(message: dict[str, Any], elapsed_s: float = 0.0) -> tuple[float | None, str]:
    """The progress bar's fraction and text for one server message; ``elapsed_s`` since the
    job started running gives a time estimate where the engine counts model steps."""
    kind = message["type"]
    if kind == "queued":
        position = message.get("position", 0)
        if position == 0:
            return 0.0, "LayerBridge: starting"
        return 0.0, f"LayerBridge: waiting, {position} job(s) ahead in the server's queue"
    if kind == "progress":
        fraction = float(message.get("fraction", 0.0))
        step, steps = message.get("step"), message.get("steps")
        text = stage_text(str(message.get("stage", "")), step, steps)
        left = remaining_seconds(fraction, elapsed_s, step, steps)
        if left is not None:
            text += f", {duration_text(left)}"
        return fraction, f"LayerBridge: {text}"
    if kind == "layer":
        return None, f"LayerBridge: received layer {message['index'] + 1} of {message['count']}"
    if kind == "preview":
        return None, "LayerBridge: image made (shown on top), splitting it into layers"
    return None, f"LayerBridge: {kind}"


def connect(
    url: str, token: str | None = None, open_timeout: float = 5.0, secret: str | None = None
) -> Client:
    """A connected client, or :class:`JobFailed` with a message that says what to do.

    ``secret`` (an earlier client's ``secret``) makes this connection the same client to
    the server, so it may fetch and cancel that client's jobs."""
    client = Client(
        url or DEFAULT_URL,
        CLIENT_NAME,
        token=token or None,
        open_timeout=open_timeout,
        secret=secret,
    )
    try:
        client.connect()
    except ServerUnavailable as exc:
        raise JobFailed(
            f"The LayerBridge server is not running at {client.url}.\n"
            f"Start it with:  {START_COMMAND}\n"
            "then run this command again (or set the server address in the dialog). For a "
            'server on this computer the plug-in starts one itself unless "start_server" is '
            f"false in {SETTINGS_FILE}.\n"
            f"Details: {exc}",
            "server_unavailable",
        ) from exc
    except ProtocolMismatch as exc:
        raise JobFailed(
            "The LayerBridge server speaks another protocol version than this plug-in "
            f"(plug-in {PLUGIN_VERSION}, protocol {protocol.PROTOCOL_VERSION}).\n"
            "Install the plug-in from the same release as the server: "
            "layerbridge install-gimp-plugin\n"
            f"Server said: {exc}",
            protocol.PROTOCOL_MISMATCH,
        ) from exc
    except ServerError as exc:
        raise JobFailed(
            f"The LayerBridge server refused the connection: {exc.message}", exc.code
        ) from exc
    return client


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SERVER_LOG = "layerbridge-serve.log"


def connect_or_start(
    settings: Settings,
    log_folder: str | os.PathLike[str],
    show: Callable[[str], None] = lambda text: None,
    wait_s: float = 120.0,
) -> Client:
    """Connect; when no server answers at a local address and ``settings.start_server`` is
    on, start ``layerbridge serve`` on that port (it keeps running for the next commands) and
    connect once it answers. Its output goes to ``layerbridge-serve.log`` in ``log_folder``."""
    try:
        return connect(settings.server, settings.token)
    except JobFailed as exc:
        address = urlsplit(settings.server or DEFAULT_URL)
        if exc.code != "server_unavailable" or not settings.start_server:
            raise
        if address.hostname not in LOCAL_HOSTS:
            raise
        command = serve_command(settings)
        if command is None:
            raise JobFailed(
                f"{exc}\nThe plug-in could not start a server itself: `layerbridge` is not on "
                f'the PATH GIMP has. Put its full path as "serve_command" in {SETTINGS_FILE}.',
                exc.code,
            ) from exc
    port = address.port or 7861
    show(f"LayerBridge: starting the server ({' '.join(command)} --port {port})")
    log_path = Path(log_folder) / SERVER_LOG
    process = start_detached([*command, "--port", str(port)], log_path)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if process.poll() is not None:
            raise JobFailed(
                f"The LayerBridge server started by the plug-in stopped (exit {process.returncode})"
                f": {tail(log_path)}",
                "server_unavailable",
            )
        with contextlib.suppress(JobFailed):
            return connect(settings.server, settings.token, open_timeout=2.0)
    raise JobFailed(
        f"The LayerBridge server started by the plug-in did not answer in {wait_s:.0f} s; "
        f"see {log_path}",
        "server_unavailable",
    )


def serve_command(settings: Settings) -> list[str] | None:
    """``layerbridge serve`` as the settings name it, or as found on PATH or in the usual
    places pip puts commands; None when nowhere."""
    if settings.serve_command.strip():
        return shlex.split(settings.serve_command)
    found = shutil.which("layerbridge")
    for candidate in (Path.home() / ".local" / "bin" / "layerbridge",):
        if found is None and candidate.is_file():
            found = str(candidate)
    return [found, "serve"] if found else None


def start_detached(command: list[str], log_path: Path) -> subprocess.Popen:
    detach: dict[str, Any] = (
        {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        if os.name == "nt"
        else {"start_new_session": True}  # outlives the plug-in's process
    )
    with contextlib.suppress(OSError):
        log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the server keeps writing after we return
    try:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, **detach)
    except OSError as exc:
        raise JobFailed(f"cannot start {command[0]}: {exc}", "server_unavailable") from exc
    finally:
        log.close()


def tail(path: Path, lines: int = 3) -> str:
    try:
        return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def fit_to_server(request: JobRequest, welcome: dict[str, Any]) -> None:
    """Check a request against what the server announced, before anything is sent.

    Model steps and resolution mean nothing to an engine without model resolutions (the
    classic one): they are left out rather than refused, so one dialog suits every engine.
    """
    capabilities = welcome.get("capabilities", {})
    resolutions = capabilities.get("resolutions") or []
    if not resolutions:
        request.params.pop("steps", None)
        request.params.pop("resolution", None)
    elif request.params.get("resolution") not in (None, *resolutions):
        raise JobFailed(
            f"Resolution {request.params['resolution']} is not one this server's "
            f"{welcome.get('engine')} engine has: use 0 (its default) or one of "
            f"{', '.join(map(str, resolutions))}.",
            protocol.BAD_PARAMS,
        )
    layers = request.params.get("layers")
    limits = capabilities.get("layers") or {}
    if isinstance(layers, int) and not limits.get("min", 1) <= layers <= limits.get("max", 10):
        raise JobFailed(
            f"Layers {layers}: this server makes {limits.get('min', 1)} to "
            f"{limits.get('max', 10)} layers, or 0 for as many as the image needs.",
            protocol.TOO_MANY_LAYERS,
        )


def reduced_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size of the same shape within ``max_pixels`` (the size itself if it fits)."""
    if width * height <= max_pixels:
        return width, height
    factor = (max_pixels / (width * height)) ** 0.5
    w, h = max(1, int(width * factor)), max(1, int(height * factor))
    while w * h > max_pixels:
        w -= 1
        h = max(1, w * height // width)
    return w, h


def check_layer(message: dict[str, Any]) -> None:
    """The server sends each layer's digest: refuse pixels that were garbled on the way."""
    digest = hashlib.sha256(message["data"]).hexdigest()
    if digest != message.get("sha256"):
        raise JobFailed(
            f"layer {message.get('index')} arrived damaged (sha256 {digest}, the server sent "
            f"{message.get('sha256')}); run the command again",
            "damaged_layer",
        )


def run_job(
    client: Client,
    request: JobRequest,
    host: Host,
    job: str | None = None,
    reconnect: Callable[[], Client] | None = None,
    retries: int = 3,
) -> JobOutcome:
    """Submit ``request``, insert each layer through ``host`` as it arrives, until the end.

    Raises :class:`JobFailed` with the server's message if the job fails. A cancel request
    seen between two messages sends ``cancel``; the job then ends as cancelled (layers
    already inserted stay, inside the same undo step, so one undo removes them).

    If the connection drops and ``reconnect`` gives a new client, the job is fetched again
    (it goes on at the server meanwhile) and only the layers not inserted yet are inserted.
    Clients made by ``reconnect`` are closed here; ``client`` stays the caller's.
    """
    try:
        job = client.submit(request.op, request.params, request.inputs, job=job)
    except ServerUnavailable as exc:
        raise _connection_lost(exc) from exc
    outcome = JobOutcome(job, [], None)
    host.show_progress(0.0, "LayerBridge: sending the job")
    opened: list[Client] = []
    try:
        for attempt in range(retries + 1):
            try:
                return _follow(client, outcome, host)
            except ServerUnavailable as exc:
                if reconnect is None or attempt == retries:
                    raise _connection_lost(exc) from exc
                host.show_progress(None, "LayerBridge: connection lost, reconnecting")
                time.sleep(min(0.5 * 2**attempt, 4.0))
                client = reconnect()
                opened.append(client)
                client.fetch(job)
                if outcome.cancel_sent:
                    client.cancel(job)
    except ServerError as exc:  # an error not tied to the job (e.g. a refused submit)
        raise JobFailed(_error_text(exc.code, exc.message), exc.code) from exc
    finally:
        for extra in opened:
            extra.close()
    raise AssertionError("unreachable")  # the loop returns or raises


def _connection_lost(exc: Exception) -> JobFailed:
    return JobFailed(
        f"The connection to the LayerBridge server was lost: {exc}", "server_unavailable"
    )


def _follow(client: Client, outcome: JobOutcome, host: Host) -> JobOutcome:
    job = outcome.job
    started: float | None = None
    for message in client.events(job):
        kind = message["type"]
        if kind == "error":
            raise JobFailed(_error_text(message["code"], message["message"]), message["code"])
        if kind == "cancelled":
            outcome.cancelled = True
            host.show_progress(None, "LayerBridge: cancelled")
            return outcome
        if kind == "done":
            outcome.done = message
            host.show_progress(1.0, f"LayerBridge: {len(outcome.layers)} layer(s) inserted")
            return outcome
        if kind == "layer" and message["index"] >= len(outcome.layers):  # not a replay
            check_layer(message)
            host.add_layer(message)
            outcome.layers.append({k: v for k, v in message.items() if k != "data"})
        if kind == "preview" and hasattr(host, "show_preview"):
            host.show_preview(message)
        if kind == "progress" and started is None:
            started = time.monotonic()
        elapsed = time.monotonic() - started if started is not None else 0.0
        fraction, text = progress_text(message, elapsed)
        host.show_progress(fraction, text)
        if not outcome.cancel_sent and host.cancel_requested():
            client.cancel(job)
            outcome.cancel_sent = True
            host.show_progress(None, "LayerBridge: cancelling")
    raise JobFailed("the server ended the job without an answer", "no_answer")


def _error_text(code: str, message: str) -> str:
    if code == protocol.UNSUPPORTED_OP:
        return f"The LayerBridge server's engine cannot do this: {message}"
    return f"LayerBridge: {message} ({code})"


# --- cancel when GIMP ends the plug-in ----------------------------------------------------


class CancelWatcher:
    """A small process that cancels the job if this one ends before the job did.

    GIMP 3.0 answers its progress bar's cancel button by killing the plug-in's process,
    which can run no code of its own then. The watcher holds the read end of a pipe: a
    normal end writes "done" first; a killed plug-in closes the pipe without it, and the
    watcher connects and sends ``cancel`` for the job, presenting the plug-in's secret (the
    server accepts a cancel from any connection of the client that submitted the job). The
    token and the secret travel in the environment, not on the command line.
    """

    def __init__(self, job: str, process: subprocess.Popen | None) -> None:
        self.job = job
        self.process = process

    @classmethod
    def start(
        cls,
        url: str,
        token: str | None = None,
        job: str | None = None,
        secret: str | None = None,
    ) -> CancelWatcher:
        job = job or uuid.uuid4().hex
        env = dict(os.environ, LAYERBRIDGE_TOKEN=token or "", LAYERBRIDGE_SECRET=secret or "")
        detach: dict[str, Any] = (
            {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
            if os.name == "nt"
            else {"start_new_session": True}  # outside the plug-in's process group
        )
        try:
            process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--cancel-if-orphaned", url, job],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                **detach,
            )
        except OSError:
            process = None  # no watcher: cancelling in GIMP then leaves the job running
        return cls(job, process)

    def stop(self) -> None:
        """The job ended here: let the watcher go without cancelling anything."""
        if self.process is None or self.process.stdin is None:
            return
        try:
            self.process.stdin.write(b"done\n")
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


def cancel_if_orphaned(
    url: str, job: str, token: str | None, timeout: float = 30.0, secret: str | None = None
) -> int:
    """The watcher's body: wait for the plug-in; cancel ``job`` if it vanished."""
    if sys.stdin.readline().strip() == "done":
        return 0
    try:
        client = Client(url, f"{CLIENT_NAME} (cancel)", token=token or None, secret=secret or None)
        client.connect()
        try:
            client.cancel(job)
            for message in client.events(job, timeout=timeout):
                if message["type"] in ("done", "error", "cancelled"):
                    break
        finally:
            client.close()
    except (ServerUnavailable, ServerError, ProtocolMismatch, TimeoutError):
        return 1
    return 0


# --- settings ---------------------------------------------------------------------------


@dataclass
class Settings:
    """What the plug-in remembers between runs beside GIMP's own per-procedure memory, in
    ``layerbridge.json`` in GIMP's profile folder: the server's address and token, whether to
    start a local server when none answers, and the command that starts it."""

    server: str = DEFAULT_URL
    token: str = ""
    start_server: bool = True
    serve_command: str = ""  # empty: `layerbridge serve` from PATH

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Settings:
        path = Path(folder) / SETTINGS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()  # first run, or a file someone broke: the defaults
        if not isinstance(data, dict):
            return cls()
        return cls(
            server=str(data.get("server") or DEFAULT_URL),
            token=str(data.get("token") or ""),
            start_server=data.get("start_server", True) is not False,
            serve_command=str(data.get("serve_command") or ""),
        )

    def save(self, folder: str | os.PathLike[str]) -> None:
        path = Path(folder) / SETTINGS_FILE
        data = {
            "server": self.server,
            "token": self.token,
            "start_server": self.start_server,
            "serve_command": self.serve_command,
        }
        # Remembering the address is a convenience, never a reason to fail a job.
        with contextlib.suppress(OSError):
            path.write_text(json.dumps(data, indent=1), encoding="utf-8")

    def with_server(self, server: str, token: str = "") -> Settings:
        """What was typed for this run wins; empty fields mean "the last one used"."""
        return Settings(
            server=server.strip() or self.server,
            token=token.strip() or self.token,
            start_server=self.start_server,
            serve_command=self.serve_command,
        )


if __name__ == "__main__" and sys.argv[1:2] == ["--cancel-if-orphaned"]:
    sys.exit(
        cancel_if_orphaned(
            sys.argv[2],
            sys.argv[3],
            os.environ.get("LAYERBRIDGE_TOKEN"),
            secret=os.environ.get("LAYERBRIDGE_SECRET"),
        )
    )
