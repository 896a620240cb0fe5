"""The websocket server: connections in, protocol events to jobs, job frames out.

The wire format lives in :mod:`layerbridge.protocol`, the jobs and the worker in
:mod:`layerbridge.jobs`; this module only wires them to ``websockets``' asyncio server
and applies the server's policy (who may connect, how much, and what happens on stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import ipaddress
import itertools
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from layerbridge import __version__, export, guard, protocol
from layerbridge.budget import (
    MemoryBudget,
    configure_allocator,
    mib,
    release_free_memory,
    working_bytes,
)
from layerbridge.engines.base import Engine, JobRequest
from layerbridge.identity import FailedTokenDelay, Identities, Identity, TokenBook
from layerbridge.jobs import FairQueue, Frame, Job, QueueFull, ResultStore, Worker, message_frame
from layerbridge.logs import TokenSafeLogger, escape
from layerbridge.positions import PositionAnnouncer
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
    #: A team server's users: name -> token (``--tokens-file``). Each is an identity.
    tokens: dict[str, str] = field(default_factory=dict)
    allowed_origins: list[str] = field(default_factory=list)
    limits: protocol.Limits = field(default_factory=protocol.Limits)
    max_queue: int = 64
    max_jobs_per_client: int = 8
    #: Queued jobs of all clients at one remote address: new identities are free to make,
    #: addresses are not (a team server's users each have their own).
    max_jobs_per_address: int = 32
    #: Bytes of queued inputs, running and kept jobs (the engine's working memory and the
    #: layers to come included), unread frames and uploads in progress. The default fits one
    #: job at the default --max-pixels on the classic engine.
    memory_budget: int = 4 << 30
    max_connections: int = 256
    max_connections_before_hello: int = 32
    #: Of those, from one address: by default a quarter off loopback, all on loopback
    #: (where every client shares the address and a burst of local clients is normal).
    max_connections_before_hello_per_address: int | None = None
    hello_timeout_s: float = 10.0
    #: A send that waits this long on a client that reads nothing closes its connection.
    send_timeout_s: float = 60.0
    #: First delay before a wrong token is answered; it doubles per failure (per address).
    failed_token_delay_s: float = 0.25
    #: Frames one connection may send a second (in bursts as large); beyond, it waits.
    max_messages_per_s: float = 200.0
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

    @property
    def before_hello_per_address(self) -> int:
        if self.max_connections_before_hello_per_address is not None:
            return self.max_connections_before_hello_per_address
        if self.loopback:
            return self.max_connections_before_hello
        return max(1, self.max_connections_before_hello // 4)

    def check(self) -> None:
        """Refuse a configuration that would expose the server to anyone on the network."""
        if not self.loopback and not (self.token or self.tokens):
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
    """One connection: its protocol state, who it is, its job streams, and a lock that
    keeps a header and its binary frame together on the wire."""

    _ids = itertools.count(1)

    def __init__(self, ws: ServerConnection, send_timeout_s: float) -> None:
        self.ws = ws
        self.conn: protocol.ServerConnection
        self.identity: Identity | None = None  # set by hello
        self.id = f"c{next(self._ids)}"
        self.send_timeout_s = send_timeout_s
        self.send_lock = asyncio.Lock()
        self.streams: set[asyncio.Task[None]] = set()
        address = ws.remote_address
        self.address = str(address[0]) if isinstance(address, tuple) and address else "?"

    @property
    def name(self) -> str:
        """The client's own name for itself, escaped for logs, and this connection's id."""
        return f"{escape(self.conn.client or '?')}#{self.id}"

    @property
    def owner(self) -> str:
        assert self.identity is not None, "only a greeted client owns jobs"
        return self.identity.key

    async def send(self, frame: Frame) -> None:
        text = frame.text
        if not text.isascii():
            # A client's string echoed back (a job id in hello_required) may hold a lone
            # surrogate from a JSON escape; strict UTF-8 would raise and drop the connection.
            text = text.encode("utf-8", "replace").decode("utf-8")
        await guard.send_within(self.ws, self._send_locked(text, frame.data), self.send_timeout_s)

    async def _send_locked(self, text: str, data: bytes | memoryview | None) -> None:
        async with self.send_lock:
            await self.ws.send(text)
            if data is not None:
                await self.ws.send(data)

    async def send_message(self, message: protocol.Message) -> None:
        await self.send(message_frame(message))


class LayerBridgeServer:
    """Serves one engine to many clients through one fair queue and one worker."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.tokens = TokenBook(config.token, config.tokens)
        self.identities = Identities()
        self.token_delay = FailedTokenDelay(first_s=config.failed_token_delay_s)
        self.guard = guard.ConnectionGuard(
            config.max_connections,
            config.max_connections_before_hello,
            config.before_hello_per_address,
        )
        self.queue = FairQueue(
            config.max_queue, config.max_jobs_per_client, config.max_jobs_per_address
        )
        self.results = ResultStore(
            config.result_ttl_s, min(config.max_result_bytes, config.memory_budget)
        )
        self.budget = MemoryBudget(config.memory_budget)
        self.budget.add_source("jobs", self.results.memory)
        self.budget.add_source("engine", self._engine_bytes)
        self.budget.add_source("unread", self._unread_bytes)
        self.budget.add_source("sending", self._sending_bytes)
        self.budget.add_source("uploads", self._upload_bytes)
        self.budget.on_full(lambda nbytes: self.results.evict(nbytes))
        self.positions = PositionAnnouncer(self.queue.order, self._tell_position)
        self.worker = Worker(
            engine,
            self.queue,
            config.job_timeout_s,
            config.output_dir,
            lambda job: self.positions.changed(),
            self._job_ended,
        )
        self.clients: set[Client] = set()
        #: Who is streaming each job right now: its stream tasks and their clients.
        self._streams: dict[Job, dict[asyncio.Task[None], Client]] = {}
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        #: Memory was let go since the heap was last trimmed (a job ended, a client left).
        self._freed = False

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        self.config.check()
        configure_allocator()
        self._warn_if_the_budget_is_small()
        if self.config.output_dir is not None:
            export.warm_up()
        origins: list[str | None] = [None, *self.config.allowed_origins]
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            origins=origins,  # type: ignore[arg-type]
            process_request=self.guard.process_request,
            # Before hello a frame may be one text message; hello raises it (guard).
            max_size=guard.PRE_HELLO_FRAME_BYTES,
            # Frames read ahead of the handler: each may be a whole image.
            max_queue=4,
            ssl=self.config.ssl_context(),
            compression=None,  # pixels barely compress and deflate would cost CPU per frame
            logger=TokenSafeLogger(logging.getLogger("websockets.server")),
        )
        self._tasks = [
            asyncio.create_task(self.worker.run_forever(), name="worker"),
            asyncio.create_task(self._evict_forever(), name="evictor"),
        ]
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
        running = list(self.worker.active)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(job.wait_beyond(1 << 62) for job in running)),
                self.config.shutdown_grace_s,
            )
        for job in running:
            if not job.finished:
                job.ctx.cancel()
                self.worker.fail(
                    job,
                    ErrorCode.SHUTTING_DOWN,
                    "the server is shutting down; the job was stopped before it finished",
                )
        await asyncio.sleep(0)  # let the streams pick up the final frames
        streams = {task for tasks in self._streams.values() for task in tasks}
        if streams:
            # wait, not gather: a stream cancelled by its closing connection must not cancel
            # the shutdown itself.
            await asyncio.wait(streams, timeout=5)
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    async def _evict_forever(self) -> None:
        """Let ended jobs go when their time is up, whether or not anyone sends anything."""
        every_s = min(5.0, max(0.05, self.config.result_ttl_s / 4))
        while True:
            await asyncio.sleep(every_s)
            if self.results.evict() or self._freed:
                self._freed = False
                release_free_memory()

    def _job_ended(self, job: Job) -> None:
        self._freed = True

    # --- connections --------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws, self.config.send_timeout_s)
        client.conn = protocol.ServerConnection(
            self.config.limits, self.tokens.check, functools.partial(self._admit, client)
        )
        self.guard.opened(client.address)
        self.clients.add(client)
        deadline = guard.close_unless_greeted(
            ws, lambda: client.identity is not None, self.config.hello_timeout_s
        )
        pace = guard.Pace(self.config.max_messages_per_s)
        try:
            async for frame in ws:
                await pace.wait()
                if isinstance(frame, str):
                    items = client.conn.receive_text(frame)
                else:
                    items = client.conn.receive_bytes(frame)
                for item in items:
                    await self._dispatch(client, item)
        except ConnectionClosed:
            pass
        finally:
            deadline.cancel()
            self.guard.closed(client.address, greeted=client.identity is not None)
            self.clients.discard(client)
            for task in client.streams:
                task.cancel()  # the jobs go on; only this connection's streaming stops
            self._freed = True  # its buffers

    async def _dispatch(
        self, client: Client, item: protocol.ClientEvent | protocol.ProtocolError
    ) -> None:
        # Any: each handler takes the one event type it is keyed by.
        handlers: dict[type, Callable[[Client, Any], Awaitable[None]]] = {
            protocol.ProtocolError: self._on_error,
            protocol.Hello: self._on_hello,
            protocol.Submit: self._on_submit,
            protocol.Cancel: self._on_cancel,
            protocol.Fetch: self._on_fetch,
        }
        await handlers[type(item)](client, item)

    async def _on_error(self, client: Client, error: protocol.ProtocolError) -> None:
        # The message quotes client values only through repr(), which escapes newlines.
        log.info("client %s: %s: %s", client.name, error.code, error.message)
        if error.code == ErrorCode.UNAUTHORIZED:
            # Slow a guesser down (per address, doubling); the right token is never delayed.
            await asyncio.sleep(self.token_delay.failed(client.address))
        await client.send_message(error.to_error())
        if error.code == ErrorCode.UNAUTHORIZED:
            await client.ws.close(1008, "unauthorized")

    async def _on_hello(self, client: Client, hello: protocol.Hello) -> None:
        identity, secret = self.identities.resolve(hello.user, hello.secret)
        client.identity = identity
        self.guard.greeted(client.address)
        guard.allow_full_frames(client.ws, self.config.limits.max_frame_bytes)
        self.token_delay.succeeded(client.address)
        log.info("client %s (%s) connected from %s", client.name, identity.label, client.address)
        await client.send_message(self.welcome(secret))

    def welcome(self, secret: str) -> WelcomeMessage:
        limits = self.config.limits
        capabilities = Capabilities(
            ops=list(self.engine.ops),
            max_pixels=limits.max_pixels,
            layers=LayerRange(limits.min_layers, limits.max_layers),
            resolutions=list(self.engine.resolutions),
            max_frame_bytes=limits.max_frame_bytes,
            result_ttl_s=self.config.result_ttl_s,
            workers=self.worker.slots,
        )
        return WelcomeMessage(
            protocol=protocol.PROTOCOL_VERSION,
            server=f"layerbridge/{__version__}",
            engine=self.engine.name,
            capabilities=capabilities,
            secret=secret,
        )

    def _admit(
        self, client: Client, submit: protocol.Submit, specs: list[protocol.InputSpec]
    ) -> protocol.ProtocolError | None:
        """Refuse a valid submit before its pixels arrive, if the server cannot take it."""
        refusal = self._refusal(client, submit) or self._room_for(client, submit, specs)
        if refusal is None:
            return None
        return protocol.ProtocolError(*refusal, job=submit.job)

    def _refusal(self, client: Client, submit: protocol.Submit) -> tuple[ErrorCode, str] | None:
        if self._stopping:
            return ErrorCode.SHUTTING_DOWN, "the server is shutting down; submit after it restarts"
        if submit.op not in self.engine.ops:
            return ErrorCode.UNSUPPORTED_OP, self.engine.unsupported_message(submit.op)
        if self.results.get(client.owner, submit.job) is not None:
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

    def _room_for(
        self, client: Client, submit: protocol.Submit, specs: list[protocol.InputSpec]
    ) -> tuple[ErrorCode, str] | None:
        """The queue's limits, then the memory budget: the inputs, the room for the layers
        they will become and, if it is larger than what is held for the engine already, the
        engine's working memory."""
        full = self.queue.refusal(client.owner, client.address)
        if full is not None:
            return full
        need = self._job_memory(submit, specs)
        if need.whole > self.budget.limit_bytes:
            return ErrorCode.TOO_MANY_PIXELS, self._too_big(need)
        more_for_engine = self._engine_bytes(need.working) - self._engine_bytes()
        busy = self.budget.refusal(need.held + more_for_engine)
        return None if busy is None else (ErrorCode.SERVER_BUSY, busy)

    def _job_memory(self, submit: protocol.Submit, specs: list[protocol.InputSpec]) -> JobMemory:
        pixels = sum(spec.width * spec.height for spec in specs)
        if isinstance(submit.params, GenerateParams):  # no inputs: the image it will make
            pixels = submit.params.width * submit.params.height
        return JobMemory(
            pixels=pixels,
            inputs=sum(spec.byte_count for spec in specs),
            layers=LAYER_BYTES_PER_PIXEL * pixels,
            working=working_bytes(self.engine, pixels),
        )

    def _too_big(self, need: JobMemory) -> str:
        fits = self._largest_job_pixels()
        return (
            f"this job's {need.pixels / 1e6:.1f} megapixels need about {mib(need.whole)} of "
            f"memory on the {self.engine.name} engine, more than the server's whole memory "
            f"budget of {mib(self.budget.limit_bytes)} (--memory-budget): send an image of at "
            f"most {fits / 1e6:.1f} megapixels, or start the server with a larger --memory-budget"
        )

    def _largest_job_pixels(self) -> int:
        """The most pixels one job may have and still fit the whole budget."""

        def fits(pixels: int) -> bool:
            need = pixels * (4 + LAYER_BYTES_PER_PIXEL) + working_bytes(self.engine, pixels)
            return need <= self.budget.limit_bytes

        low, high = 0, self.config.limits.max_pixels
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        return low

    def _warn_if_the_budget_is_small(self) -> None:
        largest = self._largest_job_pixels()
        if largest < self.config.limits.max_pixels:
            log.warning(
                "--memory-budget %s fits jobs of up to %.1f megapixels on the %s engine, "
                "less than --max-pixels (%.1f): larger images will be refused",
                mib(self.budget.limit_bytes),
                largest / 1e6,
                self.engine.name,
                self.config.limits.max_pixels / 1e6,
            )

    async def _on_submit(self, client: Client, submit: protocol.Submit) -> None:
        # Admitted when its text came; while its pixels came the server may have begun to
        # stop, or another connection of this client may have taken the id.
        refusal = self._refusal(client, submit)
        if refusal is not None:
            await client.send_message(ErrorMessage(*refusal, job=submit.job))
            return
        need = self._job_memory(submit, [spec for spec, _ in submit.inputs])
        job = Job(
            make_request(submit),
            client.owner,
            document_size(submit),
            client.address,
            client.name,
            layer_bytes=need.layers,
            working_bytes=need.working,
        )
        try:
            self.queue.put(job)
        except QueueFull as exc:
            await client.send_message(ErrorMessage(exc.code, exc.message, submit.job))
            return
        self.results.add(job)
        self.positions.tell_new(job)
        self._stream(client, job, replay=False)

    async def _on_cancel(self, client: Client, cancel: protocol.Cancel) -> None:
        job = self.results.get(client.owner, cancel.job)
        if job is None:
            await client.send_message(self._unknown_job(cancel.job))
            return
        if job.finished:  # it had ended: the client wants none of it, so it is let go now
            self.results.discard(job)
            await client.send_message(CancelledMessage(job.id))
            return
        streaming = client in self._streaming_clients(job)
        if self.queue.remove(job):
            job.finish(JobState.CANCELLED, message_frame(CancelledMessage(job.id)))
            self.positions.changed()
        else:
            job.ctx.cancel()  # the engine stops at its next step and the worker reports it
        if not streaming:  # its streams hear the outcome; this client hears `cancelled`
            self._stream_task(client, self._answer_cancel(client, job), job)

    async def _answer_cancel(self, client: Client, job: Job) -> None:
        """``cancelled``, once the job has stopped, to a client not streaming it."""
        with contextlib.suppress(ConnectionClosed):
            while not job.finished:
                await job.wait_beyond(len(job.frames))
            await client.send_message(CancelledMessage(job.id))

    async def _on_fetch(self, client: Client, fetch: protocol.Fetch) -> None:
        job = self.results.get(client.owner, fetch.job)
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
            f"no job {job_id!r} of yours here: results are kept "
            f"{self.config.result_ttl_s:g} s after a job ends, not across server restarts, "
            "and only for the client that submitted it (reconnect with the secret from "
            "'welcome', or the same token on a team server)",
            job_id,
        )

    # --- streaming ----------------------------------------------------------------

    def _stream(self, client: Client, job: Job, replay: bool) -> None:
        self._stream_task(client, self._send_job(client, job, replay), job)

    def _stream_task(self, client: Client, sending: Coroutine[Any, Any, None], job: Job) -> None:
        task = asyncio.create_task(sending, name=f"{client.id}-{job.id}")
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

        A replay skips transient frames that newer ones have made stale. When a job's
        frames are replaced by its outcome alone (cancelled, failed), start over on those.
        """
        cursor, generation = 0, job.generation
        with contextlib.suppress(ConnectionClosed):
            while True:
                await job.wait_beyond(cursor)
                if job.generation != generation:
                    cursor, generation = 0, job.generation
                end = len(job.frames)
                for frame in job.frames[cursor:end]:
                    cursor += 1
                    if replay and not frame.durable and cursor < end:
                        continue
                    await client.send(frame)
                if job.finished and job.generation == generation and cursor >= len(job.frames):
                    job.delivered = True
                    return

    def _tell_position(self, job: Job, position: int) -> None:
        job.append(message_frame(QueuedMessage(job.id, position), durable=False))

    # --- memory -------------------------------------------------------------------

    def _unread_bytes(self) -> int:
        """Jobs no longer kept whose frames a slow reader is still being sent."""
        return sum(
            job.memory for job in self._streams if self.results.get(job.owner, job.id) is not job
        )

    def _upload_bytes(self) -> int:
        return sum(client.conn.pending_bytes for client in self.clients)

    def _engine_bytes(self, adding: int = 0) -> int:
        """Working memory held for the engine: the largest working sets among the running
        and queued jobs (and ``adding``), one per slot. A slot runs one job at a time, so
        this covers the jobs running now and any that will run."""
        sizes = [job.working_bytes for job in (*self.worker.active, *self.queue.jobs())]
        return sum(heapq.nlargest(self.worker.slots, [*sizes, adding]))

    def _sending_bytes(self) -> int:
        """Frames copied into connections' write buffers, not yet taken by their readers."""
        return sum(client.ws.transport.get_write_buffer_size() for client in self.clients)


#: Room held for a job's layers until it ends, per pixel of its inputs: twice the inputs'
#: bytes (the classic engine's layers come to one to two times the image).
LAYER_BYTES_PER_PIXEL = 8


@dataclass(frozen=True)
class JobMemory:
    """What one job will hold of the memory budget, in bytes."""

    pixels: int
    inputs: int
    layers: int
    working: int  # while it runs

    @property
    def held(self) -> int:
        """From admission until it ends, whether it runs or waits."""
        return self.inputs + self.layers

    @property
    def whole(self) -> int:
        return self.held + self.working


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
    canvas = protocol.canvas_size(list(specs.values()))
    if canvas is not None:
        return canvas
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
