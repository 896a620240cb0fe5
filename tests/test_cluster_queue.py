"""The server's worker with an engine that runs several jobs at once, as a pool does.

No Ray here: the engine is the classic engine behind a gate that holds each job at its start
until the test lets it go, so the test decides when jobs start and end. What is checked is
the front's side of a pool: up to ``workers`` jobs at once from the one fair queue, never
more, and queue positions that count only the jobs still waiting.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from layerbridge.engines.base import Engine, JobContext, JobRequest, Layer
from tests.helpers import image_input

WORKERS = 2


class GatedEngine(Engine):
    """The classic engine, ``workers`` jobs at once, each held at its start until released."""

    workers = WORKERS

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name, self.ops = inner.name, inner.ops
        self.gates: dict[str, threading.Event] = {}
        self.running: set[str] = set()
        self.most_at_once = 0
        self._lock = threading.Lock()

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        gate = threading.Event()
        with self._lock:
            self.gates[request.job] = gate
            self.running.add(request.job)
            self.most_at_once = max(self.most_at_once, len(self.running))
        try:
            while not gate.wait(0.02):
                ctx.check_cancelled()
            yield from self.inner.run(request, ctx)
        finally:
            with self._lock:
                self.running.discard(request.job)

    def release(self, job: str) -> None:
        wait_for(lambda: job in self.gates)
        self.gates[job].set()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def picture() -> np.ndarray:
    image = np.full((24, 32, 4), 255, np.uint8)
    image[4:16, 6:20, :3] = (20, 90, 200)
    return image


@pytest.fixture
def gated(classic_engine) -> GatedEngine:
    return GatedEngine(classic_engine)


def positions(client, job: str) -> list[int]:
    """The queue positions the client has been told for ``job`` so far."""
    seen = []
    while client._pending[job]:
        message = client._pending[job].popleft()
        if message["type"] == "queued":
            seen.append(message["position"])
    return seen


def drain(client) -> None:
    """Read what the server has sent so far into the client's per-job queues."""
    while True:
        try:
            message = client._receive(timeout=0.3)
        except TimeoutError:
            return
        client._pending[message.get("job")].append(message)


def test_the_worker_runs_as_many_jobs_at_once_as_the_engine_has_workers(serve, gated) -> None:
    server = serve(gated)
    inputs = [image_input(picture())]
    with server.client("a") as a, server.client("b") as b:
        assert a.welcome["capabilities"]["workers"] == WORKERS
        first = a.submit("decompose", {"layers": 2}, inputs)
        second = b.submit("decompose", {"layers": 2}, inputs)
        wait_for(lambda: len(gated.running) == 2)
        third = a.submit("decompose", {"layers": 2}, inputs)
        fourth = b.submit("decompose", {"layers": 2}, inputs)
        time.sleep(0.3)
        assert gated.running == {first, second}  # the other two wait in the queue
        drain(a)
        drain(b)
        assert positions(a, third)[-1] == 0 and positions(b, fourth)[-1] == 1
        gated.release(second)  # a worker comes free: the next in line starts, in order
        wait_for(lambda: third in gated.running)
        drain(b)
        assert positions(b, fourth)[-1] == 0
        for job in (first, third, fourth):
            gated.release(job)
        results = [a.wait(first, timeout=60), b.wait(second, timeout=60),
                   a.wait(third, timeout=60), b.wait(fourth, timeout=60)]
    assert all(result.done is not None for result in results)
    assert gated.most_at_once == WORKERS
    kept = {job.id: job for job in server.server.results.jobs()}
    spans = [kept.get(job) for job in (first, second)]
    assert all(job is not None for job in spans)
    assert spans[0].started_at < spans[1].finished_at and spans[1].started_at < spans[0].finished_at


def test_stopping_the_server_fails_every_running_job(serve, gated, caplog) -> None:
    server = serve(gated, shutdown_grace_s=0.5)
    inputs = [image_input(picture())]
    with server.client("a") as a:
        jobs = [a.submit("decompose", {"layers": 2}, inputs) for _ in range(WORKERS)]
        wait_for(lambda: len(gated.running) == WORKERS)
        server.call(server.server.stop())
        outcomes = [list(a.events(job, timeout=30))[-1] for job in jobs]
    assert [(m["type"], m["code"]) for m in outcomes] == [("error", "shutting_down")] * WORKERS
    wait_for(lambda: not gated.running)  # their engine runs were told to stop
    time.sleep(0.2)  # their outcomes reach the server's loop
    gc.collect()
    # Each abandoned run's outcome was taken (asyncio logs one never taken, and may do so
    # in the middle of another thread's work).
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
