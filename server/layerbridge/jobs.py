"""Jobs: their recorded output, the fair queue, the kept results, and the one worker.

Everything a job sends is recorded on the job as :class:`Frame` objects before any
client sees it. A connection streams a job by walking that record with a cursor, so
the submitting client, a client that ``fetch``-es after a reconnect and a slow client
all read the same frames, and nothing a job produced is lost while it is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from layerbridge import protocol
from layerbridge.engines.base import Engine, JobContext, JobRequest
from layerbridge.export import export_layers
from layerbridge.imaging import trim_to_alpha
from layerbridge.protocol import (
    CancelledMessage,
    DoneMessage,
    ErrorMessage,
    LayerMessage,
    PreviewMessage,
    ProgressMessage,
    Timings,
)
from layerbridge.types import (
    EngineError,
    ErrorCode,
    JobCancelled,
    JobState,
    Layer,
    LayerBridgeError,
    is_out_of_memory,
    out_of_memory_error,
)

log = logging.getLogger("layerbridge.jobs")

#: Kept for code that imported it; ``JobState.final`` is the rule.
FINAL_STATES = tuple(state for state in JobState if state.final)


@dataclass(frozen=True)
class Frame:
    """One message of a job, ready to send: JSON text and, for layers, its pixels.

    ``durable`` frames (layers, the outcome) are replayed by ``fetch``; transient ones
    (queue position, progress) only matter while they are new.
    """

    text: str
    data: bytes | memoryview | None = None
    durable: bool = True

    @property
    def size(self) -> int:
        return len(self.text) + (len(self.data) if self.data is not None else 0)


def message_frame(
    message: protocol.Message, data: bytes | memoryview | None = None, durable: bool = True
) -> Frame:
    return Frame(protocol.encode(message), data, durable)


class Job:
    """One submitted job: its request, its state and every frame it produced."""

    def __init__(self, request: JobRequest, owner: str, size: tuple[int, int]) -> None:
        self.request = request
        self.input_sizes = ",".join(
            f"{i.name}={i.width}x{i.height}" for i in request.inputs.values()
        )
        self.owner = owner
        self.size = size  # the document's (width, height)
        self.state = JobState.QUEUED
        self.outcome_code: ErrorCode | str | None = None
        self.frames: list[Frame] = []
        self.nbytes = 0
        self.ctx = JobContext()
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.saved: Path | None = None
        self._changed = asyncio.Event()

    @property
    def id(self) -> str:
        return self.request.job

    @property
    def finished(self) -> bool:
        return self.state.final

    def append(self, frame: Frame) -> None:
        """Record a frame and wake every connection streaming this job (event loop only)."""
        if self.finished:
            return  # a late frame from an abandoned engine thread
        self.frames.append(frame)
        self.nbytes += frame.size
        self._wake()

    def finish(self, state: JobState, frame: Frame, code: ErrorCode | str | None = None) -> None:
        if self.finished:
            return
        self.frames.append(frame)
        self.state, self.outcome_code = state, code
        self.finished_at = time.monotonic()
        # A kept result holds its output frames (counted in the store's budget), not the
        # client's input pixels, which nothing reads once the job is over.
        self.request = replace(self.request, inputs={})
        self._wake()

    async def wait_beyond(self, cursor: int) -> None:
        """Return once there is a frame at ``cursor`` or the job is finished."""
        while cursor >= len(self.frames) and not self.finished:
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class QueueFull(LayerBridgeError):
    """The queue (or this client's share of it) has no room: ``code`` says which."""


class FairQueue:
    """Queued jobs, taken round robin across clients so that no client starves another."""

    def __init__(self, max_jobs: int, max_per_client: int) -> None:
        self.max_jobs = max_jobs
        self.max_per_client = max_per_client
        self._queues: dict[str, deque[Job]] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def put(self, job: Job) -> None:
        if len(self) >= self.max_jobs:
            raise QueueFull(
                ErrorCode.QUEUE_FULL,
                f"the server's queue is full ({self.max_jobs} jobs); try again when a job is done",
            )
        queue = self._queues.setdefault(job.owner, deque())
        if len(queue) >= self.max_per_client:
            raise QueueFull(
                ErrorCode.TOO_MANY_JOBS,
                f"this client already has {self.max_per_client} jobs queued; wait for one to "
                "finish or cancel one",
            )
        queue.append(job)
        self._ready.set()

    def remove(self, job: Job) -> bool:
        queue = self._queues.get(job.owner)
        if queue is None or job not in queue:
            return False
        queue.remove(job)
        if not queue:
            del self._queues[job.owner]
        return True

    def order(self) -> list[Job]:
        """The jobs in the order they will run: one per client in turn."""
        queues = [list(q) for q in self._queues.values()]
        depth = max((len(q) for q in queues), default=0)
        return [q[i] for i in range(depth) for q in queues if i < len(q)]

    async def take(self) -> Job:
        while not self._queues:
            self._ready.clear()
            await self._ready.wait()
        owner = next(iter(self._queues))
        queue = self._queues.pop(owner)
        job = queue.popleft()
        if queue:
            self._queues[owner] = queue  # re-inserted last: the next client goes first
        return job


class ResultStore:
    """Every known job by id; finished ones kept for ``ttl_s`` within ``max_bytes``."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._jobs: dict[str, Job] = {}

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def add(self, job: Job) -> None:
        self.evict()
        self._jobs[job.id] = job

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def evict(self) -> None:
        """Drop finished jobs past their time, then the oldest finished while over budget."""
        now = time.monotonic()
        finished = sorted(
            (j for j in self._jobs.values() if j.finished), key=lambda j: j.finished_at or 0
        )
        total = sum(j.nbytes for j in self._jobs.values())
        for job in finished:
            if now - (job.finished_at or now) > self.ttl_s or total > self.max_bytes:
                total -= job.nbytes
                del self._jobs[job.id]


def layer_frame(job_id: str, index: int, count: int, layer: Layer) -> Frame:
    """A layer's header and pixels, trimmed to its alpha bounds, with a digest."""
    trimmed = trim_to_alpha(layer)
    if trimmed is None:  # fully transparent: one clear pixel keeps the layer's place
        trimmed = Layer(layer.name, np.zeros((1, 1, 4), np.uint8), layer.x, layer.y)
    pixels = np.ascontiguousarray(trimmed.pixels, dtype=np.uint8)
    base = pixels.base
    if isinstance(base, np.ndarray) and base.nbytes > pixels.nbytes:
        # A trimmed band of whole rows is a view that would pin the full-size layer for as
        # long as the result is kept, while the store's budget counts only the band.
        pixels = pixels.copy()
    # A view of the pixels, not a copy: websockets sends any bytes-like object.
    data = memoryview(pixels).cast("B")
    height, width = pixels.shape[:2]
    header = LayerMessage(
        job=job_id,
        index=index,
        count=count,
        name=trimmed.name,
        x=int(trimmed.x),
        y=int(trimmed.y),
        width=int(width),
        height=int(height),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return message_frame(header, data)


class Worker:
    """Runs queued jobs one at a time on the engine, in a thread, with a time limit.

    The engine runs in its own daemon thread so the event loop keeps serving while it
    works; a job that overruns ``timeout_s`` is failed and abandoned (its thread is told
    to cancel) so the next job can start.
    """

    def __init__(
        self,
        engine: Engine,
        queue: FairQueue,
        timeout_s: float,
        output_dir: Path | None = None,
        on_start: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self.engine = engine
        self.output_dir = output_dir
        self.queue = queue
        self.timeout_s = timeout_s
        self.on_start = on_start
        self.running: Job | None = None

    async def run_forever(self) -> None:
        while True:
            job = await self.queue.take()
            self.running = job
            self.on_start(job)
            try:
                await self.run(job)
            finally:
                self.running = None

    async def run(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        job.state, job.started_at = JobState.RUNNING, time.monotonic()
        job.ctx = JobContext(lambda event: loop.call_soon_threadsafe(self._report, job, event))
        outcome: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._run_in_thread,
            args=(job, loop, outcome),
            daemon=True,
            name=f"job-{job.id}",
        )
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(outcome), self.timeout_s)
            self._succeed(job)
        except JobCancelled:
            job.finish(JobState.CANCELLED, message_frame(CancelledMessage(job.id)))
        except asyncio.TimeoutError:
            job.ctx.cancel()
            # The abandoned thread settles ``outcome`` later (JobCancelled at best): take its
            # exception then, or asyncio logs "Future exception was never retrieved".
            outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.fail(
                job,
                ErrorCode.TIMEOUT,
                f"the job ran past the server's limit of "
                f"{self.timeout_s:g} s (--job-timeout) and was stopped",
            )
        except EngineError as exc:
            self.fail(job, exc.code, exc.message)
        except Exception as exc:  # the engine's bug must not take the server down
            self._fail_unexpected(job, exc)
        finally:
            self._log(job)

    def _run_in_thread(
        self, job: Job, loop: asyncio.AbstractEventLoop, outcome: asyncio.Future[None]
    ) -> None:
        def settle(exc: BaseException | None) -> None:
            if outcome.done():
                return
            if exc is None:
                outcome.set_result(None)
            else:
                outcome.set_exception(exc)

        try:
            layers = self._produce_layers(job, loop)
            self._save(job, layers)
            error: BaseException | None = None
        except BaseException as exc:  # handed to the event loop, which decides
            error = exc
        loop.call_soon_threadsafe(settle, error)

    def _produce_layers(self, job: Job, loop: asyncio.AbstractEventLoop) -> list[Layer]:
        """Run the engine; send each layer as soon as its index and the count are known."""
        held: list[Layer] = []
        made: list[Layer] = []
        index = 0
        for layer in self.engine.run(job.request, job.ctx):
            job.ctx.check_cancelled()
            made.append(layer)
            count = job.ctx.layer_count
            if count is None:
                held.append(layer)
                continue
            loop.call_soon_threadsafe(job.append, layer_frame(job.id, index, count, layer))
            index += 1
        count = index + len(held)
        for layer in held:
            loop.call_soon_threadsafe(job.append, layer_frame(job.id, index, count, layer))
            index += 1
        job.ctx.layer_count = index
        return made

    def _save(self, job: Job, layers: list[Layer]) -> None:
        """Write the layers to the output folder when the job asked (``params.save``)."""
        name = job.request.params.save
        if not name or self.output_dir is None:
            return
        job.ctx.progress(1.0, "save")
        job.saved = export_layers(layers, job.size, self.output_dir / name)

    def _report(self, job: Job, event: dict[str, Any]) -> None:
        if "preview" in event:
            pixels = np.ascontiguousarray(event["preview"], dtype=np.uint8)
            header = PreviewMessage(job.id, int(pixels.shape[1]), int(pixels.shape[0]))
            job.append(message_frame(header, memoryview(pixels).cast("B"), durable=False))
        else:
            progress = ProgressMessage(
                job.id, event["fraction"], event["stage"], event.get("step"), event.get("steps")
            )
            job.append(message_frame(progress, durable=False))

    def _succeed(self, job: Job) -> None:
        now = time.monotonic()
        started = job.started_at or now
        timings = Timings(
            queued_s=round(started - job.submitted_at, 4),
            run_s=round(now - started, 4),
            total_s=round(now - job.submitted_at, 4),
        )
        done = DoneMessage(
            job=job.id,
            width=job.size[0],
            height=job.size[1],
            layers=job.ctx.layer_count or 0,
            timings=timings,
            saved=None if job.saved is None else str(job.saved),
        )
        job.finish(JobState.DONE, message_frame(done))

    def fail(self, job: Job, code: ErrorCode | str, message: str) -> None:
        job.finish(JobState.FAILED, message_frame(ErrorMessage(code, message, job.id)), code)

    def _fail_unexpected(self, job: Job, exc: Exception) -> None:
        if is_out_of_memory(exc):
            error = out_of_memory_error(exc)
            self.fail(job, error.code, error.message)
            return
        log.exception("job %s failed in the engine", job.id, exc_info=exc)
        self.fail(
            job,
            ErrorCode.ENGINE_FAILED,
            f"the {self.engine.name} engine failed: {type(exc).__name__}: {exc}",
        )

    def _log(self, job: Job) -> None:
        request = job.request
        sizes = job.input_sizes
        started, finished = job.started_at or 0.0, job.finished_at or time.monotonic()
        log.info(
            "job=%s op=%s client=%s inputs=%s layers=%s queued_s=%.3f run_s=%.3f outcome=%s%s",
            job.id,
            request.op,
            job.owner,
            sizes or "-",
            job.ctx.layer_count or 0,
            started - job.submitted_at,
            finished - started,
            job.state,
            f" code={job.outcome_code}" if job.outcome_code else "",
        )
