"""The front's side of the pool: an engine that runs each job on a Serve replica.

:class:`RemoteEngine` looks like any local engine to the server's worker: ``run`` yields
layers and calls the job's :class:`JobContext`. It forwards the :class:`JobRequest` to a
replica (:class:`~layerbridge.cluster.replica.EngineReplica`) and turns the replica's
events back into those calls. LayerBridge's fair queue, kept results, fetch and time
limits stay in the front; Serve never holds more jobs than it has replicas.

A replica that dies mid-job (its process killed, its machine gone) costs one retry on
another replica when no layer of the job was sent yet. The seed is drawn here, before the
first try, so the retry makes the same layers. Otherwise the job fails with
``worker_lost``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from layerbridge.cluster.events import (
    LayerMade,
    Outcome,
    Report,
    Started,
    replay_report,
)
from layerbridge.cluster.replica import EngineInfo
from layerbridge.engines.base import Engine, JobContext, JobRequest
from layerbridge.types import EngineError, ErrorCode, JobCancelled, Layer

log = logging.getLogger("layerbridge.cluster")

#: How often a running job's cancel flag is looked at, in seconds.
CANCEL_POLL_S = 0.02
#: Started events kept for inspection (which replica ran which job, and how it was).
KEPT_STARTS = 256


class ReplicaLost(Exception):
    """The replica running a job died or became unreachable before the job's outcome."""


class RemoteEngine(Engine):
    """Runs jobs on a pool of Serve replicas, one job per replica at a time."""

    def __init__(self, handle: Any, info: EngineInfo, workers: int) -> None:
        self._run = handle.options(method_name="run", stream=True)
        self.info = info
        self.name = info.name
        self.ops = info.ops
        self.min_layers = info.min_layers
        self.max_layers = info.max_layers
        self.resolutions = info.resolutions
        #: How many jobs may run at once: one per replica.
        self.workers = workers
        #: (job id, Started) for recent runs, newest last.
        self.starts: deque[tuple[str, Started]] = deque(maxlen=KEPT_STARTS)

    def unsupported_message(self, op: str) -> str:
        return self.info.unsupported.get(op) or super().unsupported_message(op)

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        request = with_seed(request)
        for attempt in (1, 2):
            sent = 0
            try:
                for layer in self._attempt(request, ctx):
                    sent += 1
                    yield layer
                return
            except ReplicaLost as lost:
                if sent or attempt == 2:
                    raise EngineError(ErrorCode.WORKER_LOST,
                                      worker_lost_message(sent, attempt)) from lost
                log.warning("job %s: %s; running it again on another replica", request.job, lost)
                ctx.progress(0.0, "retry")

    def _attempt(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        """One try on one replica: its layers; its outcome raised as the worker expects."""
        response = self._run.remote(request)
        settled = threading.Event()
        threading.Thread(
            target=cancel_when_asked, args=(ctx, response, settled), daemon=True,
            name=f"cancel-{request.job}",
        ).start()
        ended = False
        try:
            for event in receive(response, ctx):
                if isinstance(event, Started):
                    self._started(request.job, event)
                elif isinstance(event, Report):
                    replay_report(ctx, event.event)
                elif isinstance(event, LayerMade):
                    if event.count is not None:
                        ctx.set_layer_count(event.count)
                    yield owned(event.layer)
                elif isinstance(event, Outcome):
                    ended = True
                    raise_outcome(event)
                    return
            raise ReplicaLost("the replica's stream ended without an outcome")
        finally:
            settled.set()
            if not ended:  # the worker stopped reading (a cancel seen after a layer): stop it
                with contextlib.suppress(Exception):
                    response.cancel()

    def _started(self, job: str, started: Started) -> None:
        self.starts.append((job, started))
        log.info("job=%s replica=%s pid=%d", job, started.replica, started.pid)
        if started.busy != 1:  # the replica's lock failed: two pipelines share one device
            log.error("replica %s runs %d jobs at once", started.replica, started.busy)


def receive(response: Any, ctx: JobContext) -> Iterator[Any]:
    """The replica's events, with Ray's ways of ending a stream told apart: our own cancel
    is :class:`JobCancelled`, a dead replica :class:`ReplicaLost`."""
    import ray.exceptions
    from ray.serve.exceptions import ReplicaUnavailableError

    lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
            ReplicaUnavailableError)
    try:
        yield from response
    except Exception as exc:
        if ctx.cancelled or isinstance(exc, ray.exceptions.TaskCancelledError):
            raise JobCancelled() from exc
        if isinstance(exc, lost):
            raise ReplicaLost(f"its replica died ({type(exc).__name__})") from exc
        raise


def cancel_when_asked(ctx: JobContext, response: Any, settled: threading.Event) -> None:
    """Cancel the request once the job is cancelled, unless it settles first.

    Serve cancels the replica's task; the replica stops its engine through its own
    JobContext and keeps the next job waiting until the engine has stopped.
    """
    while not settled.wait(CANCEL_POLL_S):
        if ctx.cancelled:
            response.cancel()
            return


def owned(layer: Layer) -> Layer:
    """The layer with its own copy of the pixels. Ray hands numpy arrays over as read-only
    views of its object store; a kept result would pin that memory for as long as it is
    kept, outside the result store's budget."""
    return replace(layer, pixels=np.array(layer.pixels))


def raise_outcome(outcome: Outcome) -> None:
    """Turn a replica's outcome into what a local engine would have done."""
    if outcome.state == "cancelled":
        raise JobCancelled()
    if outcome.state == "failed":
        raise EngineError(outcome.code or ErrorCode.ENGINE_FAILED,
                          outcome.message or "the job failed")


def with_seed(request: JobRequest) -> JobRequest:
    """The request with a seed drawn here when it has none, so a retry repeats the job."""
    if request.params.seed is not None:
        return request
    seed = secrets.randbits(63)
    log.info("job %s: random seed %d", request.job, seed)
    return replace(request, params=replace(request.params, seed=seed))


def worker_lost_message(sent: int, attempt: int) -> str:
    if sent:
        return (f"the worker running this job stopped after sending {sent} layer(s), so it "
                "cannot be resumed; submit the job again")
    return (f"the worker running this job stopped, and so did the one that ran it again "
            f"(try {attempt}); check the cluster (`ray status`) and submit the job again")
