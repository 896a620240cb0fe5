"""The websocket server: connections in, protocol events to jobs, job frames out.

The wire format lives in :mod:`layerbridge.protocol`, the jobs and the worker in
:mod:`layerbridge.jobs`; this module only wires them to ``websockets``' asyncio server
and applies the server's policy (who may connect, how much, and what happens on stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from layerbridge import __version__, protocol
from layerbridge.engines.base import Engine, JobRequest
from layerbridge.jobs import FairQueue, Frame, Job, QueueFull, ResultStore, Worker, message_frame
from layerbridge.logs import TokenSafeLogger
from layerbridge.protocol import (
    CancelledMessage,
    Capabilities,
    ErrorMessage,
    LayerRange,
    QueuedMessage,
    WelcomeMessage,
)
from layerbridge.types import ErrorCode, GenerateParams, InputImage, JobState

log = logging.getLogger("layerbridge.server")


DEFAULT_PORT = 7861


@dataclass
class ServerConfig:
    """Everything the server's policy depends on; the CLI fills it from its flags."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    allowed_origins: list[str] = field(default_factory=list)
    limits: protocol.Limits = field(default_factory=protocol.Limits)
    max_queue: int = 64
    max_jobs_per_client: int = 8
    #: Jobs one connection may be receiving at once (its own and fetched ones): each costs a
    #: task, so a client sending fetches without reading would otherwise grow memory freely.
    max_streams_per_client: int = 32
    result_ttl_s: float = 1800.0
    max_result_bytes: int = 2 << 30
    job_timeout_s: float = 3600.0
    shutdown_grace_s: float = 10.0
    output_dir: Path | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check(self) -> None:
        """Refuse a configuration that would expose the server to anyone on the network."""
        if not self.loopback and not self.token:
            raise ValueError(
                f"binding {self.host} exposes the server beyond this machine: pass --token "
                "(or set LAYERBRIDGE_TOKEN) so only clients that know it get in"
            )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.certfile:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


class Client:
    """One connection: its protocol state, its job streams, and a lock that keeps a
    header and its binary frame together on the wire."""

    _ids = itertools.count(1)

    def __init__(self, ws: ServerConnection, conn: protocol.ServerConnection) -> None:
        self.ws = ws
        self.conn = conn
        self.id = f"c{next(self._ids)}"
        self.send_lock = asyncio.Lock()
        self.streams: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return f"{self.conn.client or '?'}#{self.id}"

    async def send(self, frame: Frame) -> None:
        text = frame.text
        if not text.isascii():
            # A client's string echoed back (a job id in hello_required) may hold a lone
            # surrogate from a JSON escape; strict UTF-8 would raise and drop the connection.
            text = text.encode("utf-8", "replace").decode("utf-8")
        async with self.send_lock:
            await self.ws.send(text)
            if frame.data is not None:
                await self.ws.send(frame.data)

    async def send_message(self, message: protocol.Message) -> None:
        await self.send(message_frame(message))


class LayerBridgeServer:
    """Serves one engine to many clients through one fair queue and one worker."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.queue = FairQueue(config.max_queue, config.max_jobs_per_client)
        self.results = ResultStore(config.result_ttl_s, config.max_result_bytes)
        self.worker = Worker(
            engine, self.queue, config.job_timeout_s, config.output_dir, self._announce_positions
        )
        self.clients: set[Client] = set()
        #: Who is streaming each job right now: its stream tasks and their clients.
        self._streams: dict[Job, dict[asyncio.Task[None], Client]] = {}
        self._server: Server | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        self.config.check()
        origins: list[str | None] = [None, *self.config.allowed_origins]
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            origins=origins,  # type: ignore[arg-type]
            max_size=self.config.limits.max_frame_bytes,
            ssl=self.config.ssl_context(),
            compression=None,  # pixels barely compress and deflate would cost CPU per frame
            logger=TokenSafeLogger(logging.getLogger("websockets.server"), "<"),
        )
        self._worker_task = asyncio.create_task(self.worker.run_forever(), name="worker")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.certfile else "ws"
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{scheme}://{self.config.host}:{port}"

    async def stop(self) -> None:
        """Stop: refuse new work, let the running job finish within the grace period or
        fail it, fail queued jobs, tell every client, then close."""
        self._stopping = True  # from here on a submit gets shutting_down
        queued = self.queue.order()
        for job in queued:
            self.queue.remove(job)
            self.worker.fail(job, ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        running = self.worker.running
        if running is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(running.wait_beyond(1 << 62), self.config.shutdown_grace_s)
            if not running.finished:
                running.ctx.cancel()
                self.worker.fail(
                    running,
                    ErrorCode.SHUTTING_DOWN,
                    "the server is shutting down; the job was stopped before it finished",
                )
        await asyncio.sleep(0)  # let the streams pick up the final frames
        streams = {task for tasks in self._streams.values() for task in tasks}
        if streams:
            # wait, not gather: a stream cancelled by its closing connection must not cancel
            # the shutdown itself.
            await asyncio.wait(streams, timeout=5)
        if self._worker_task is not None:
            self._worker_task.cancel()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    # --- connections --------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws, protocol.ServerConnection(self.config.limits, self._check_token))
        self.clients.add(client)
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    items = client.conn.receive_text(frame)
                else:
                    items = client.conn.receive_bytes(frame)
                for item in items:
                    await self._dispatch(client, item)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            for task in client.streams:
                task.cancel()  # the jobs go on; only this connection's streaming stops

    def _check_token(self, given: str | None) -> bool:
        expected = self.config.token
        if not expected:
            return True
        if given is None:
            return False
        # surrogatepass: a JSON "\udcff" escape decodes to a lone surrogate, which strict
        # UTF-8 refuses; such a token is simply wrong, it must not crash the connection.
        return hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
        )

    async def _dispatch(self, client: Client, item: protocol.ClientEvent | protocol.ProtocolError):
        handlers: dict[type, Callable[[Client, object], Awaitable[None]]] = {
            protocol.ProtocolError: self._on_error,
            protocol.Hello: self._on_hello,
            protocol.Submit: self._on_submit,
            protocol.Cancel: self._on_cancel,
            protocol.Fetch: self._on_fetch,
        }  # type: ignore[dict-item]
        await handlers[type(item)](client, item)

    async def _on_error(self, client: Client, error: protocol.ProtocolError) -> None:
        log.info("client %s: %s: %s", client.name, error.code, error.message)
        await client.send_message(error.to_error())
        if error.code == ErrorCode.UNAUTHORIZED:
            await client.ws.close(1008, "unauthorized")

    async def _on_hello(self, client: Client, hello: protocol.Hello) -> None:
        log.info("client %s connected from %s", client.name, client.ws.remote_address)
        await client.send_message(self.welcome())

    def welcome(self) -> WelcomeMessage:
        limits = self.config.limits
        capabilities = Capabilities(
            ops=list(self.engine.ops),
            max_pixels=limits.max_pixels,
            layers=LayerRange(limits.min_layers, limits.max_layers),
            resolutions=list(self.engine.resolutions),
            max_frame_bytes=limits.max_frame_bytes,
            result_ttl_s=self.config.result_ttl_s,
        )
        return WelcomeMessage(
            protocol=protocol.PROTOCOL_VERSION,
            server=f"layerbridge/{__version__}",
            engine=self.engine.name,
            capabilities=capabilities,
        )

    async def _on_submit(self, client: Client, submit: protocol.Submit) -> None:
        error = self._refusal(submit)
        if error is not None:
            await client.send_message(ErrorMessage(*error, job=submit.job))
            return
        job = Job(make_request(submit), client.name, document_size(submit))
        try:
            self.queue.put(job)
        except QueueFull as exc:
            await client.send_message(ErrorMessage(exc.code, exc.message, submit.job))
            return
        self.results.add(job)
        self._announce_positions()
        self._stream(client, job, replay=False)

    def _refusal(self, submit: protocol.Submit) -> tuple[ErrorCode, str] | None:
        if self._stopping:
            return ErrorCode.SHUTTING_DOWN, "the server is shutting down; submit after it restarts"
        if submit.op not in self.engine.ops:
            return ErrorCode.UNSUPPORTED_OP, self.engine.unsupported_message(submit.op)
        if submit.job in self.results:
            return ErrorCode.DUPLICATE_JOB, (
                f"job id {submit.job!r} is already in use; give every job a new id (a UUID)"
            )
        if submit.params.save and self.config.output_dir is None:
            return ErrorCode.BAD_PARAMS, (
                "this server saves no files: start it with --output-dir to use 'save'"
            )
        resolution = submit.params.resolution
        if resolution is not None and resolution not in self.engine.resolutions:
            allowed = ", ".join(map(str, self.engine.resolutions)) or "none (this engine)"
            return ErrorCode.BAD_PARAMS, f"'resolution' {resolution} is not one of {allowed}"
        return None

    async def _on_cancel(self, client: Client, cancel: protocol.Cancel) -> None:
        job = self.results.get(cancel.job)
        if job is None:
            await client.send_message(self._unknown_job(cancel.job))
        elif self.queue.remove(job):
            job.finish(JobState.CANCELLED, message_frame(CancelledMessage(job.id)))
            self._announce_positions()
        elif not job.finished:
            job.ctx.cancel()  # the engine stops at its next step and the worker reports it
        if job is not None and client not in self._streaming_clients(job):
            await self._replay(client, job)

    async def _on_fetch(self, client: Client, fetch: protocol.Fetch) -> None:
        self.results.evict()
        job = self.results.get(fetch.job)
        if job is None:
            await client.send_message(self._unknown_job(fetch.job))
        else:
            await self._replay(client, job)

    async def _replay(self, client: Client, job: Job) -> None:
        """Stream a job to a client from its start, if the client has room for one more."""
        limit = self.config.max_streams_per_client
        if len(client.streams) < limit:
            self._stream(client, job, replay=True)
            return
        message = f"this connection is already receiving {limit} jobs: read them and wait for "
        message += "their 'done' before fetching more"
        await client.send_message(ErrorMessage(ErrorCode.TOO_MANY_FETCHES, message, job.id))

    def _unknown_job(self, job_id: str) -> ErrorMessage:
        return ErrorMessage(
            ErrorCode.UNKNOWN_JOB,
            f"no job {job_id!r} here: results are kept {self.config.result_ttl_s:g} s after a "
            "job ends, and not across server restarts",
            job_id,
        )

    # --- streaming ----------------------------------------------------------------

    def _stream(self, client: Client, job: Job, replay: bool) -> None:
        task = asyncio.create_task(
            self._send_job(client, job, replay), name=f"{client.id}-{job.id}"
        )
        client.streams.add(task)
        self._streams.setdefault(job, {})[task] = client
        task.add_done_callback(client.streams.discard)
        task.add_done_callback(lambda done: self._stream_ended(job, done))

    def _stream_ended(self, job: Job, task: asyncio.Task[None]) -> None:
        streams = self._streams.get(job, {})
        streams.pop(task, None)
        if not streams:
            self._streams.pop(job, None)

    def _streaming_clients(self, job: Job) -> set[Client]:
        return set(self._streams.get(job, {}).values())

    async def _send_job(self, client: Client, job: Job, replay: bool) -> None:
        """Send a job's frames to one client from the start, then as they come.

        A replay skips transient frames that newer ones have made stale.
        """
        cursor = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                await job.wait_beyond(cursor)
                end = len(job.frames)
                for frame in job.frames[cursor:end]:
                    cursor += 1
                    if replay and not frame.durable and cursor < end:
                        continue
                    await client.send(frame)
                if job.finished and cursor >= len(job.frames):
                    return

    def _announce_positions(self, started: Job | None = None) -> None:
        for position, job in enumerate(self.queue.order()):
            job.append(message_frame(QueuedMessage(job.id, position), durable=False))


def make_request(submit: protocol.Submit) -> JobRequest:
    inputs = {
        spec.name: InputImage(
            spec.name,
            np.frombuffer(data, np.uint8).reshape(spec.height, spec.width, 4),
            spec.x,
            spec.y,
        )
        for spec, data in submit.inputs
    }
    return JobRequest(submit.job, submit.op, submit.params, inputs)


def document_size(submit: protocol.Submit) -> tuple[int, int]:
    """The document a job's layers belong to: the image or document input, the generated
    size, or the extent of the layer."""
    specs = {spec.name: spec for spec, _ in submit.inputs}
    for name in ("image", "document"):
        if name in specs:
            return specs[name].width, specs[name].height
    if "layer" in specs:
        layer = specs["layer"]
        return max(1, layer.x + layer.width), max(1, layer.y + layer.height)
    if not isinstance(submit.params, GenerateParams):
        raise ValueError(f"a {submit.op} job without its input has no document size")
    return submit.params.width, submit.params.height


async def run_server(
    engine: Engine, config: ServerConfig, on_ready: Callable[[str], None] = print
) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    server = LayerBridgeServer(engine, config)
    await server.start()
    on_ready(server.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await server.stop()
