"""A synchronous LayerBridge client: the standard library, ``websockets`` and ``protocol``.

The GIMP plug-in ships a copy of this module (GIMP's Python has no pip), and scripts and
tests use it as is. Messages of other jobs that arrive while one job is read are kept
for later, so one connection can run several jobs.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection as WebSocket
from websockets.sync.client import connect

from layerbridge import protocol
from layerbridge.logs import TokenSafeLogger
from layerbridge.protocol import CancelMessage, FetchMessage, HelloMessage
from layerbridge.types import ErrorCode, LayerBridgeError

DEFAULT_URL = "ws://127.0.0.1:7861"
FINAL_TYPES = ("done", "error", "cancelled")
START_HINT = "start it with `layerbridge serve` (see the LayerBridge README)"


class ServerUnavailable(ConnectionError):
    """No LayerBridge server answers at the address."""


class ProtocolMismatch(RuntimeError):
    """The server speaks another protocol version."""


class ServerError(LayerBridgeError, RuntimeError):
    """An ``error`` message from the server: ``code`` is stable, ``message`` says what to do."""

    def __init__(self, code: ErrorCode | str, message: str, job: str | None = None) -> None:
        super().__init__(code, message)
        self.args = (f"{message} ({code})",)
        self.job = job


@dataclass
class JobResult:
    """What a finished job sent: its layers (bottom first, with ``data``) and ``done``."""

    job: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    preview: dict[str, Any] | None = None
    cancelled: bool = False


class Client:
    """One connection to a LayerBridge server."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        client_name: str = "layerbridge-python",
        token: str | None = None,
        open_timeout: float = 5.0,
        origin: str | None = None,
        secret: str | None = None,
    ) -> None:
        self.url = url
        self.client_name = client_name
        self.token = token
        #: The key to this client's jobs: from the first ``welcome``, sent back in every
        #: later ``hello`` (a reconnect finds its jobs); pass one to resume another session.
        self.secret = secret
        self.open_timeout = open_timeout
        self.origin = origin
        self.welcome: dict[str, Any] | None = None
        self._ws: WebSocket | None = None
        self._protocol = protocol.ClientConnection()
        self._pending: dict[str | None, deque[dict[str, Any]]] = defaultdict(deque)

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> dict[str, Any]:
        """Open the connection and greet the server; return its ``welcome``."""
        try:
            # Entered by hand: the connection lives beyond one ``with`` block, and entering
            # it is what websockets 17 asks of direct use (older releases accept it too).
            self._ws = connect(
                self.url,
                open_timeout=self.open_timeout,
                max_size=None,  # the server announces and enforces its own limits
                compression=None,
                origin=self.origin,  # type: ignore[arg-type]
                logger=TokenSafeLogger(logging.getLogger("websockets.client")),
            ).__enter__()
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise ServerUnavailable(
                f"no LayerBridge server at {self.url} ({exc}); {START_HINT}"
            ) from exc
        hello = HelloMessage(self.client_name, self.token, secret=self.secret)
        self._send(protocol.encode(hello))
        reply = self._receive()
        if reply["type"] == "error":
            if reply["code"] == ErrorCode.PROTOCOL_MISMATCH:
                raise ProtocolMismatch(reply["message"])
            raise ServerError(reply["code"], reply["message"])
        if reply["type"] != "welcome":
            raise ProtocolMismatch(f"expected welcome, the server sent {reply['type']!r}")
        self.welcome = reply
        self.secret = reply.get("secret", self.secret)
        return reply

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    # --- requests -----------------------------------------------------------------

    def submit(
        self,
        op: str,
        params: dict[str, Any] | None = None,
        inputs: list[tuple[protocol.InputSpec, bytes]] | None = None,
        job: str | None = None,
    ) -> str:
        """Send a job; return its id (a new UUID unless given)."""
        job = job or uuid.uuid4().hex
        for frame in protocol.submit_frames(job, op, params or {}, inputs or []):
            self._send(frame)
        return job

    def cancel(self, job: str) -> None:
        self._send(protocol.encode(CancelMessage(job)))

    def fetch(self, job: str) -> None:
        """Ask for a job's results again (after a reconnect); read them with ``events``."""
        self._send(protocol.encode(FetchMessage(job)))

    # --- results ------------------------------------------------------------------

    def events(self, job: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the job's messages until its ``done``, ``error`` or ``cancelled``."""
        while True:
            message = self._next_for(job, timeout)
            yield message
            if message["type"] in FINAL_TYPES:
                return

    def wait(
        self,
        job: str,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> JobResult:
        """Collect a job's results; raise :class:`ServerError` if it failed."""
        result = JobResult(job)
        for message in self.events(job, timeout):
            if on_message is not None:
                on_message(message)
            kind = message["type"]
            if kind == "layer":
                result.layers.append(message)
            elif kind == "preview":
                result.preview = message
            elif kind == "done":
                result.done = message
            elif kind == "cancelled":
                result.cancelled = True
            elif kind == "error":
                raise ServerError(message["code"], message["message"], job)
        return result

    def run(
        self,
        op: str,
        params: dict[str, Any] | None = None,
        inputs: list[tuple[protocol.InputSpec, bytes]] | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> JobResult:
        """Submit a job and wait for all of it."""
        return self.wait(self.submit(op, params, inputs), on_message, timeout)

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message for any job (or none), in arrival order."""
        for key, queue in self._pending.items():
            if queue:
                return self._pending[key].popleft()
        return self._receive(timeout)

    # --- plumbing -----------------------------------------------------------------

    def _next_for(self, job: str, timeout: float | None) -> dict[str, Any]:
        queue = self._pending[job]
        while not queue:
            message = self._receive(timeout)
            owner = message.get("job")
            if owner is None and message["type"] == "error":
                if message["code"] == protocol.UNEXPECTED_BINARY:
                    # The input frames of a submit the server refused (that job already
                    # got its own error): nothing to do with the job read now.
                    logging.getLogger(__name__).debug("ignored: %s", message["message"])
                    continue
                raise ServerError(message["code"], message["message"])
            self._pending[owner].append(message)
        return queue.popleft()

    def _send(self, frame: str | bytes) -> None:
        if self._ws is None:
            raise ServerUnavailable(f"not connected to {self.url}; call connect() first")
        try:
            self._ws.send(frame)
        except ConnectionClosed as exc:
            raise ServerUnavailable(f"the server at {self.url} closed the connection") from exc

    def _receive(self, timeout: float | None = None) -> dict[str, Any]:
        if self._ws is None:
            raise ServerUnavailable(f"not connected to {self.url}; call connect() first")
        while True:
            try:
                frame = self._ws.recv(timeout)
            except ConnectionClosed as exc:
                raise ServerUnavailable(
                    f"the server at {self.url} closed the connection ({exc}); {START_HINT}"
                ) from exc
            messages = self._protocol.receive(frame)
            if messages:
                # A frame completes at most one message.
                return messages[0]
