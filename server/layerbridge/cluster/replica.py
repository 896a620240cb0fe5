"""The cluster side: one warm engine per Serve replica, one job at a time.

:class:`EngineReplica` is the class Ray Serve runs in each replica (see
:mod:`layerbridge.cluster.pool`, which deploys it). Its ``run`` is an **async** generator:
Serve cancels a request by cancelling the task that drives it, which an async generator
sees at its next ``await`` (a sync generator would run on, and Serve would route the next
request to a replica whose engine is still busy). The engine itself runs in a thread, as in
the local worker, and is stopped through its :class:`JobContext`.

The replica's lock is held from the moment a job is taken until its engine thread has
ended, not until its request ends: a cancelled request ends at once, its engine at its
next step, and the next job waits for that.

This module imports nothing from Ray at import time, so the front can import it before it
has set the environment Ray reads when it is first imported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from layerbridge.cluster.events import (
    Event,
    LayerMade,
    Outcome,
    OutcomeState,
    Report,
    RunRecord,
    Started,
)
from layerbridge.engines.base import JobContext, JobRequest
from layerbridge.engines.registry import create_engine
from layerbridge.jobs import unexpected_failure
from layerbridge.types import OPS, EngineError, ErrorCode, JobCancelled

log = logging.getLogger("layerbridge.cluster.replica")


@dataclass(frozen=True)
class EngineInfo:
    """What the front needs to know of the replicas' engine to announce and check jobs."""

    name: str
    ops: tuple[str, ...]
    min_layers: int
    max_layers: int
    resolutions: tuple[int, ...]
    #: The engine's own message for each op it cannot run.
    unsupported: dict[str, str]


class StepCounter:
    """Counts the model steps an engine reports, to tell how far it ran past a cancel."""

    def __init__(self) -> None:
        self.steps = 0
        self.at_cancel: int | None = None
        self.cancelled_at: float | None = None

    def seen(self, event: dict[str, Any]) -> None:
        if "step" in event:
            self.steps += 1

    def cancel(self) -> None:
        if self.at_cancel is None:
            self.at_cancel, self.cancelled_at = self.steps, time.monotonic()

    def record(self, job: str, state: OutcomeState) -> RunRecord:
        if self.at_cancel is None or self.cancelled_at is None:
            return RunRecord(job, state, None, None)
        return RunRecord(job, state, self.steps - self.at_cancel,
                         time.monotonic() - self.cancelled_at)


class EngineReplica:
    """One engine, built and warmed once per replica, running one job at a time."""

    def __init__(
        self, engine_name: str, engine_options: dict[str, Any], loopback_only: bool = False
    ) -> None:
        if loopback_only:
            keep_replica_grpc_on_loopback()
        self.engine = create_engine(engine_name, **engine_options)
        self.engine.warm_up()
        # Taken by a job, given back by its engine thread when that thread ends.
        self._free = asyncio.Lock()
        self._busy = 0
        self._last_run: RunRecord | None = None

    def describe(self) -> EngineInfo:
        engine = self.engine
        return EngineInfo(
            name=engine.name,
            ops=tuple(engine.ops),
            min_layers=engine.min_layers,
            max_layers=engine.max_layers,
            resolutions=tuple(engine.resolutions),
            unsupported={op: engine.unsupported_message(op)
                         for op in OPS if op not in engine.ops},
        )

    async def run(self, request: JobRequest) -> AsyncIterator[Event]:
        """Run one job; yield :class:`Started`, its reports and layers, then its outcome."""
        await self._free.acquire()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()
        steps = StepCounter()

        def report(event: dict[str, Any]) -> None:  # called from the engine thread
            steps.seen(event)
            loop.call_soon_threadsafe(events.put_nowait, Report(event))

        ctx = JobContext(report)
        self._busy += 1
        started = Started(self._replica_id(), os.getpid(), self._busy, self._last_run)
        thread = threading.Thread(
            target=self._run_engine,
            args=(request, ctx, steps, loop, events.put_nowait),
            daemon=True,
            name=f"job-{request.job}",
        )
        try:
            thread.start()
        except BaseException:
            self._busy -= 1
            self._free.release()
            raise
        try:
            yield started
            while True:
                event = await events.get()
                yield event
                if isinstance(event, Outcome):
                    return
        finally:
            # Reached on a normal end, and when Serve cancels the request (CancelledError)
            # or the caller vanishes: the engine stops at its next step either way.
            steps.cancel()
            ctx.cancel()

    def _run_engine(
        self,
        request: JobRequest,
        ctx: JobContext,
        steps: StepCounter,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Event], None],
    ) -> None:
        """The engine thread: every layer and the outcome go to the loop through ``send``."""
        outcome = Outcome("failed", ErrorCode.ENGINE_FAILED,
                          "the engine thread ended without a result")
        try:
            for layer in self.engine.run(request, ctx):
                ctx.check_cancelled()
                loop.call_soon_threadsafe(send, LayerMade(layer, ctx.layer_count))
            outcome = Outcome("done")
        except JobCancelled:
            outcome = Outcome("cancelled")
        except EngineError as exc:
            outcome = Outcome("failed", exc.code, exc.message)
        except Exception as exc:  # the engine's bug must not take the replica down
            log.exception("job %s failed in the engine", request.job)
            error = unexpected_failure(self.engine.name, exc)
            outcome = Outcome("failed", error.code, error.message)
        finally:
            record = steps.record(request.job, outcome.state)
            loop.call_soon_threadsafe(self._finish, record, outcome, send)

    def _finish(self, record: RunRecord, outcome: Outcome, send: Callable[[Event], None]) -> None:
        """On the loop, once the engine thread is over: free the replica for the next job."""
        self._last_run = record
        self._busy -= 1
        send(outcome)
        self._free.release()

    @staticmethod
    def _replica_id() -> str:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id


def keep_replica_grpc_on_loopback() -> None:
    """Bind this replica's inter-deployment gRPC server to 127.0.0.1, not every interface.

    Ray Serve 2.60 binds that server to ``[::]:0`` whatever the node's address (its
    ``replica.py``, ray-project/ray#59908). LayerBridge never uses it (the front reaches the
    replicas through Ray's core transport), but on a cluster meant to stay on this machine
    it must not listen on the network. Serve builds the user class before it starts that
    server, so this runs from ``__init__``; the tests check every Ray listener.
    """
    from ray.serve._private import replica as serve_replica

    bind = serve_replica.add_port_to_grpc_server  # type: ignore[attr-defined]
    if getattr(bind, "loopback_only", False):
        return

    def bind_on_loopback(server: Any, address: str) -> Any:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0"):
            address = f"127.0.0.1:{port}"
        return bind(server, address)  # type: ignore[no-untyped-call]

    bind_on_loopback.loopback_only = True  # type: ignore[attr-defined]
    serve_replica.add_port_to_grpc_server = bind_on_loopback  # type: ignore[attr-defined]
