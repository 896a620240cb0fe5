"""Faults: engines that raise, run out of memory or hang; clients that vanish; Ctrl-C.

The fault engines are test doubles that WRAP the real classic engine: on the calls
chosen they raise or hang (fault injection), on every other call they delegate, so the
jobs around a fault are real decompositions. Everything else is real: the server on a
loopback port, websocket clients, a bare TCP socket killed with a reset, and the
``layerbridge serve`` command in a subprocess.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from layerbridge.client import Client, ServerError
from layerbridge.engines.base import Engine, JobContext, JobRequest, Layer
from tests.helpers import (
    FaultyEngine,
    check_job_complete,
    hello,
    image_input,
    raise_bug,
    raw_connect,
    raw_send,
    read_frame,
    start_cli_server,
    submit,
)
from tests.synthetic import flat_design as design

LAYERBRIDGE = [sys.executable, "-m", "layerbridge.cli"]


def cuda_out_of_memory(ctx: JobContext) -> None:
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def host_out_of_memory(ctx: JobContext) -> None:
    raise MemoryError()


def hang_ignoring_cancel(ctx: JobContext) -> None:
    time.sleep(3)  # a stuck kernel: does not look at ctx at all


def hang_until_cancelled(ctx: JobContext) -> None:
    while True:
        ctx.check_cancelled()
        time.sleep(0.01)


def outcome(client: Client, job: str) -> str:
    try:
        result = client.wait(job, timeout=60)
    except ServerError as error:
        return error.code
    return "done" if result.done is not None else "cancelled"


def test_raise_and_out_of_memory_fail_their_job_and_the_next_runs(serve, classic_engine):
    engine = FaultyEngine(
        classic_engine, {2: raise_bug, 3: cuda_out_of_memory, 4: host_out_of_memory}
    )
    running = serve(engine)
    with running.client("faults") as client:
        jobs = [client.submit("decompose", {}, [image_input(design(seed=k))]) for k in range(5)]
        outcomes = [outcome(client, job) for job in jobs]
        assert outcomes == ["done", "engine_failed", "out_of_memory", "out_of_memory", "done"]
        messages = {}
        for job in jobs[1:4]:
            client.fetch(job)
            messages[job] = list(client.events(job, timeout=10))[-1]["message"]
    assert "ZeroDivisionError" in messages[jobs[1]]
    assert "CUDA out of memory" in messages[jobs[2]] and "memory option" in messages[jobs[2]]


def test_a_hung_engine_times_out_and_the_next_job_runs(serve, classic_engine, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    engine = FaultyEngine(classic_engine, {1: hang_ignoring_cancel, 2: hang_until_cancelled})
    # 2 s: well past the 160x120 decompose the third job is, even on a loaded machine
    running = serve(engine, job_timeout_s=2.0)
    with running.client("hangs") as client:
        jobs = [client.submit("decompose", {}, [image_input(design(seed=k))]) for k in range(3)]
        started = time.monotonic()
        assert [outcome(client, job) for job in jobs] == ["timeout", "timeout", "done"]
        # the next job waited for the first's stuck thread (3 s) to come back: the engine
        # is never run by two threads at once
        assert time.monotonic() - started >= 2.9
        client.fetch(jobs[0])
        assert "limit of 2 s" in list(client.events(jobs[0], timeout=10))[-1]["message"]
    gc.collect()  # the abandoned job's settled future: its exception was taken, not leaked
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


class SharedPipeline(Engine):
    """The classic engine behind one shared, stateful stage, as a diffusion pipeline's
    scheduler is: a test double that counts how many threads are inside it at once. Its
    first call stalls in a long "kernel" that does not look at the job's cancel flag."""

    def __init__(self, inner: Engine, stall_s: float) -> None:
        self.inner, self.stall_s = inner, stall_s
        self.name, self.ops = inner.name, inner.ops
        self.min_layers, self.max_layers = inner.min_layers, inner.max_layers
        self.calls = self.inside = self.most_inside = 0
        self.lock = threading.Lock()

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(self.stall_s if first else 0.3)
            layers = list(self.inner.run(request, ctx))
        finally:
            with self.lock:
                self.inside -= 1
        yield from layers


def test_a_timed_out_jobs_thread_never_shares_the_engine_with_the_next(
    serve, classic_engine
) -> None:
    engine = SharedPipeline(classic_engine, stall_s=5.0)
    running = serve(engine, job_timeout_s=2.0)
    with running.client("shared") as client:
        images = [design(80, 60, seed=k) for k in range(3)]
        jobs = [client.submit("decompose", {}, [image_input(image)]) for image in images]
        assert [outcome(client, job) for job in jobs] == ["timeout", "done", "done"]
    assert engine.most_inside == 1


class SlowLayers(Engine):
    """The real classic engine, with a pause before each layer so a stream can be cut
    in the middle (a test double only in timing)."""

    def __init__(self, inner: Engine, pause_s: float) -> None:
        self.inner, self.pause_s = inner, pause_s
        self.name, self.ops = inner.name, inner.ops
        self.min_layers, self.max_layers = inner.min_layers, inner.max_layers

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        layers = list(self.inner.run(request, ctx))
        ctx.set_layer_count(len(layers))
        for layer in layers:
            time.sleep(self.pause_s)
            yield layer


def test_client_killed_mid_stream_fetches_every_layer_once_after_reconnect(
    serve, classic_engine
) -> None:
    running = serve(SlowLayers(classic_engine, pause_s=0.3))
    image = design(seed=3)
    sock = raw_connect(running.url)
    raw_send(sock, hello("killed"))
    welcome = json.loads(read_frame(sock)[1])
    assert welcome["type"] == "welcome"
    for frame in submit("killed-job", image):
        raw_send(sock, frame)
    while True:  # read until the first layer's pixels arrived, then die
        opcode, payload = read_frame(sock)
        if opcode == 0x2:
            break
    # An abrupt kill: RST, no close frame.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    [job] = [j for j in running.server.results.jobs() if j.id == "killed-job"]
    assert not job.finished, "the stream was not cut in the middle"
    with running.client("back", secret=welcome["secret"]) as client:  # the same client
        client.fetch("killed-job")
        result = client.wait("killed-job", timeout=60)
    check_job_complete(result, image)  # indices 0..count-1 once each, sha256, composite
    assert len(result.layers) >= 2


def noisy_image(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    base = design(width, height, 1).astype(np.int16)
    noise = rng.integers(-40, 40, base.shape, dtype=np.int16)
    noise[..., 3] = 0
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def test_ctrl_c_mid_job_tells_clients_and_exits_zero(tmp_path: Path) -> None:
    server, url = start_cli_server(tmp_path)
    try:
        with Client(url, "ctrl-c") as client:
            image = image_input(noisy_image(900, 675))
            jobs = [client.submit("decompose", {}, [image]) for _ in range(3)]
            next(m for m in client.events(jobs[0], timeout=60) if m["type"] == "progress")
            server.send_signal(signal.SIGINT)
            signalled = time.monotonic()
            outcomes = [outcome(client, job) for job in jobs]
        # the running job finishes within the grace or is failed; the queued are failed
        assert set(outcomes) <= {"done", "shutting_down"}, outcomes
        assert outcomes[-1] == "shutting_down", outcomes
        assert server.wait(20) == 0
        # the server's grace for the running job is 10 s; it exits soon after
        assert time.monotonic() - signalled < 15
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_every_fault_leaves_the_server_serving(serve, classic_engine) -> None:
    """All the faults in a row on one server, then 4 clients at once still get results."""
    faults = {2: raise_bug, 3: cuda_out_of_memory, 4: hang_until_cancelled, 5: raise_bug}
    running = serve(FaultyEngine(classic_engine, faults), job_timeout_s=1.0)
    with running.client("faults") as client:
        jobs = [client.submit("decompose", {}, [image_input(design(seed=k))]) for k in range(5)]
        assert [outcome(client, job) for job in jobs] == [
            "done",
            "engine_failed",
            "out_of_memory",
            "timeout",
            "engine_failed",
        ]
    results: list[str] = []

    def one(n: int) -> None:
        with running.client(f"after-{n}") as c:
            image = design(seed=20 + n)
            result = c.run("decompose", {}, [image_input(image)], timeout=60)
            check_job_complete(result, image)
            results.append(hashlib.sha256(result.layers[0]["data"]).hexdigest())

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
