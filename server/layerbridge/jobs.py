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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from layerbridge import protocol
from layerbridge.engines.base import Engine, JobContext, JobRequest
from layerbridge.export import save_layers
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
    """One submitted job: its request, its state and every frame it produced.

    ``owner`` is the identity key of who submitted it (see :mod:`layerbridge.identity`):
    job ids are per owner. ``address`` is the submitting connection's remote address and
    ``label`` names the client in logs (escaped, no secret). For the memory budget,
    ``layer_bytes`` is the room held for the layers it will make until it ends, and
    ``working_bytes`` the engine's working memory while it runs.
    """

    def __init__(
        self,
        request: JobRequest,
        owner: str,
        size: tuple[int, int],
        address: str = "",
        label: str = "",
        layer_bytes: int = 0,
        working_bytes: int = 0,
    ) -> None:
        self.request = request
        self.input_sizes = ",".join(
            f"{i.name}={i.width}x{i.height}" for i in request.inputs.values()
        )
        self.input_bytes = sum(i.pixels.nbytes for i in request.inputs.values())
        self.layer_bytes, self.working_bytes = layer_bytes, working_bytes
        self.owner, self.address, self.label = owner, address, label or owner
        self.size = size  # the document's (width, height)
        #: Bumped when the frames are replaced by the outcome alone (see ``finish``).
        self.generation = 0
        self.state = JobState.QUEUED
        self.outcome_code: ErrorCode | str | None = None
        self.frames: list[Frame] = []
        self.nbytes = 0
        self.ctx = JobContext()
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.saved: Path | None = None
        #: Some client has received all of it: the first to go when room is needed.
        self.delivered = False
        self._changed = asyncio.Event()
        #: Told how many bytes this job's memory grew by (negative: shrank): the store's
        #: running total, so the memory budget is counted without walking every job.
        self.on_memory: Callable[[int], None] | None = None

    @property
    def id(self) -> str:
        return self.request.job

    @property
    def key(self) -> tuple[str, str]:
        """Unique across owners: (owner, job id)."""
        return self.owner, self.id

    @property
    def memory(self) -> int:
        """Bytes this job holds: its input pixels until it ends, and every frame kept; until
        it ends, the room held for its layers however few have come yet."""
        if self.finished:
            return self.nbytes
        return self.input_bytes + max(self.nbytes, self.layer_bytes)

    @property
    def finished(self) -> bool:
        return self.state.final

    def append(self, frame: Frame) -> None:
        """Record a frame and wake every connection streaming this job (event loop only)."""
        if self.finished:
            return  # a late frame from an abandoned engine thread
        before = self.memory
        self.frames.append(frame)
        self.nbytes += frame.size
        self._grew(self.memory - before)
        self._wake()

    def finish(self, state: JobState, frame: Frame, code: ErrorCode | str | None = None) -> None:
        if self.finished:
            return
        before = self.memory
        self.frames.append(frame)
        self.nbytes += frame.size
        self.state, self.outcome_code = state, code
        self.finished_at = time.monotonic()
        # A kept result holds its output frames (counted in the memory budget), not the
        # client's input pixels, which nothing reads once the job is over.
        self.request = replace(self.request, inputs={})
        self.input_bytes = 0
        if state != JobState.DONE:
            # A cancelled or failed job's partial layers are of no use to anyone: keep the
            # outcome alone. Streams notice the new generation and send just that.
            self.frames = [frame]
            self.nbytes = frame.size
            self.generation += 1
        self._grew(self.memory - before)
        self._wake()

    def _grew(self, nbytes: int) -> None:
        if self.on_memory is not None and nbytes:
            self.on_memory(nbytes)

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

    def __init__(self, max_jobs: int, max_per_client: int, max_per_address: int = 0) -> None:
        self.max_jobs = max_jobs
        self.max_per_client = max_per_client
        self.max_per_address = max_per_address or max_jobs
        self._queues: dict[str, deque[Job]] = {}  # by owner (identity)
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def jobs(self) -> Iterator[Job]:
        """Every queued job, in no particular order."""
        for queue in self._queues.values():
            yield from queue

    def refusal(self, owner: str, address: str) -> tuple[ErrorCode, str] | None:
        """Why one more job of ``owner`` from ``address`` would not fit, or None."""
        if len(self) >= self.max_jobs:
            return (
                ErrorCode.QUEUE_FULL,
                f"the server's queue is full ({self.max_jobs} jobs); try again when a job is done",
            )
        if len(self._queues.get(owner, ())) >= self.max_per_client:
            return (
                ErrorCode.TOO_MANY_JOBS,
                f"this client already has {self.max_per_client} jobs queued; wait for one to "
                "finish or cancel one",
            )
        from_address = sum(j.address == address for q in self._queues.values() for j in q)
        if from_address >= self.max_per_address:
            return (
                ErrorCode.TOO_MANY_JOBS,
                f"your network address already has {self.max_per_address} jobs queued "
                "(--max-jobs-per-address); wait for one to finish or cancel one",
            )
        return None

    def put(self, job: Job) -> None:
        refusal = self.refusal(job.owner, job.address)
        if refusal is not None:
            raise QueueFull(*refusal)
        self._queues.setdefault(job.owner, deque()).append(job)
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
    """Every known job by (owner, id); finished ones kept for ``ttl_s`` within ``max_bytes``."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._jobs: dict[tuple[str, str], Job] = {}
        self._bytes = 0  # sum of the kept jobs' memory, kept up to date by the jobs

    def __contains__(self, job_id: str) -> bool:
        """Whether any owner has a job of this id (tests and tools; clients see their own)."""
        return any(key[1] == job_id for key in self._jobs)

    def get(self, owner: str, job_id: str) -> Job | None:
        """The job, unless it ended more than ``ttl_s`` ago (then it is let go now)."""
        job = self._jobs.get((owner, job_id))
        if job is not None and job.finished and self._expired(job, time.monotonic()):
            self.discard(job)
            return None
        return job

    def add(self, job: Job) -> None:
        self._jobs[job.key] = job
        self._bytes += job.memory
        job.on_memory = self._grew

    def discard(self, job: Job) -> None:
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]
            self._bytes -= job.memory
            job.on_memory = None

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def memory(self) -> int:
        return self._bytes

    def _grew(self, nbytes: int) -> None:
        self._bytes += nbytes

    def _expired(self, job: Job, now: float) -> bool:
        return now - (job.finished_at or now) > self.ttl_s

    def evict(self, free_bytes: int = 0) -> int:
        """Drop finished jobs past their time, then, while over ``max_bytes`` or until
        ``free_bytes`` more are free, those already delivered and then the rest, oldest
        first; return how many went."""
        now = time.monotonic()
        finished = sorted(
            (j for j in self._jobs.values() if j.finished),
            key=lambda j: (not j.delivered, j.finished_at or 0),
        )
        target = min(self.max_bytes, self._bytes - free_bytes)
        gone = 0
        for job in finished:
            if self._expired(job, now) or self._bytes > target:
                self.discard(job)
                gone += 1
        return gone


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
    data = pixels.data.cast("B")
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
    """Runs queued jobs on the engine, up to ``engine.workers`` at once, each in a thread,
    with a time limit.

    A local engine runs one job at a time (one device); a pool of workers
    (:mod:`layerbridge.cluster`) one per worker, all taken from the one fair queue: each
    slot below stands for one engine worker. Each engine run has its own daemon thread so
    the event loop keeps serving while it works.

    A job that overruns ``timeout_s`` is failed at once (its client hears ``timeout``) and
    its thread is told to cancel; its slot takes the next job only once that thread has
    stopped. An engine holds state across a call (a diffusion pipeline's scheduler and
    caches, the GPU memory it allocated), so a second thread inside it corrupts both jobs;
    rebuilding the engine instead would reload its weights while the old thread still holds
    the GPU's memory. Every engine checks for cancel at each step, so the wait is one step.
    """

    def __init__(
        self,
        engine: Engine,
        queue: FairQueue,
        timeout_s: float,
        output_dir: Path | None = None,
        on_start: Callable[[Job], None] = lambda job: None,
        on_end: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self.engine = engine
        self.output_dir = output_dir
        self.queue = queue
        self.timeout_s = timeout_s
        self.on_start, self.on_end = on_start, on_end
        self.active: set[Job] = set()

    @property
    def slots(self) -> int:
        """How many jobs run at once: one per worker of the engine."""
        return max(1, self.engine.workers)

    @property
    def running(self) -> Job | None:
        """A running job, if any (the first started, when several run)."""
        return min(self.active, key=lambda job: job.started_at or 0.0, default=None)

    async def run_forever(self) -> None:
        await asyncio.gather(*(self._run_slot() for _ in range(self.slots)))

    async def _run_slot(self) -> None:
        abandoned: threading.Thread | None = None
        while True:
            await self._until_stopped(abandoned)
            job = await self.queue.take()
            self.active.add(job)
            self.on_start(job)
            try:
                abandoned = await self.run(job)
            finally:
                self.active.discard(job)
                self.on_end(job)

    @staticmethod
    async def _until_stopped(thread: threading.Thread | None) -> None:
        """Wait until a timed-out job's thread has left the engine."""
        if thread is None or not thread.is_alive():
            return
        log.warning("waiting for %s to stop before the next job uses the engine", thread.name)
        while thread.is_alive():
            await asyncio.sleep(0.05)

    async def run(self, job: Job) -> threading.Thread | None:
        """Run ``job`` to its end; return its thread if it was abandoned still running."""
        loop = asyncio.get_running_loop()
        job.state, job.started_at = JobState.RUNNING, time.monotonic()
        job.ctx = JobContext(lambda event: loop.call_soon_threadsafe(self._report, job, event))
        outcome: asyncio.Future[None] = loop.create_future()
        # A run abandoned on a time limit or a server stop settles ``outcome`` when no one
        # awaits it any more: take its exception then, or asyncio logs "Future exception was
        # never retrieved" whenever the future is collected.
        outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        thread = threading.Thread(
            target=self._run_in_thread,
            args=(job, loop, outcome),
            daemon=True,
            name=f"job-{job.id}",
        )
        thread.start()
        abandoned: threading.Thread | None = None
        try:
            await asyncio.wait_for(asyncio.shield(outcome), self.timeout_s)
            self._succeed(job)
        except JobCancelled:
            job.finish(JobState.CANCELLED, message_frame(CancelledMessage(job.id)))
        except asyncio.TimeoutError:
            job.ctx.cancel()
            abandoned = thread
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
        return abandoned

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
        job.saved = save_layers(layers, job.size, self.output_dir, name)

    def _report(self, job: Job, event: dict[str, Any]) -> None:
        if "preview" in event:
            pixels = np.ascontiguousarray(event["preview"], dtype=np.uint8)
            header = PreviewMessage(job.id, int(pixels.shape[1]), int(pixels.shape[0]))
            job.append(message_frame(header, pixels.data.cast("B"), durable=False))
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
            forwards_computed=job.ctx.stats.get("forwards_computed"),
            forwards_skipped=job.ctx.stats.get("forwards_skipped"),
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
        error = unexpected_failure(self.engine.name, exc)
        if error.code == ErrorCode.ENGINE_FAILED:
            log.exception("job %s failed in the engine", job.id, exc_info=exc)
        self.fail(job, error.code, error.message)

    def _log(self, job: Job) -> None:
        request = job.request
        sizes = job.input_sizes
        started, finished = job.started_at or 0.0, job.finished_at or time.monotonic()
        log.info(
            "job=%s op=%s client=%s inputs=%s layers=%s queued_s=%.3f run_s=%.3f outcome=%s%s",
            job.id,
            request.op,
            job.label,
            sizes or "-",
            job.ctx.layer_count or 0,
            started - job.submitted_at,
            finished - started,
            job.state,
            f" code={job.outcome_code}" if job.outcome_code else "",
        )


def unexpected_failure(engine_name: str, exc: Exception) -> EngineError:
    """What an exception an engine did not turn into an EngineError tells the client:
    out of memory, or the engine's failure with its type and text. Used in this process and
    in a pool's replicas alike."""
    if is_out_of_memory(exc):
        return out_of_memory_error(exc)
    return EngineError(
        ErrorCode.ENGINE_FAILED, f"the {engine_name} engine failed: {type(exc).__name__}: {exc}"
    )
