"""Memory held to a budget: queued work counted in bytes, nothing big accepted before
``hello``, clients that never read are dropped, ended jobs let go on time, and a canvas
cannot be inflated by an input's offset.

Real server on a loopback port, real websocket clients and bare sockets (a client that
announces a huge frame, or never reads, is easiest to be with a socket).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from layerbridge.client import Client, ServerError
from layerbridge.engines.base import JobRequest
from layerbridge.jobs import Job, ResultStore, message_frame
from layerbridge.protocol import CancelledMessage, Limits
from layerbridge.types import JobState
from tests.helpers import (
    GatedEngine,
    Peer,
    Result,
    check_job_complete,
    image_input,
    outcome,
    raw_connect,
    raw_send,
    read_frame,
    stall,
    start_cli_server,
    tree_memory,
    wait_until,
)
from tests.synthetic import flat_design as design

MiB = 1 << 20


def test_queued_inputs_are_refused_past_the_memory_budget(serve, classic_engine) -> None:
    engine = GatedEngine(classic_engine)
    budget = 48 * MiB
    running = serve(engine, memory_budget=budget, max_jobs_per_client=64, max_queue=64)
    image = design(1024, 1024, seed=1)  # 4 MiB of input pixels a job
    accepted: list[str] = []
    with Peer(running.url, "big") as peer:
        for k in range(16):  # 64 MiB asked for
            peer.submit(f"big{k}", image)
            reply = peer.first_for(f"big{k}", 10)
            if reply["type"] == "error":
                break
            accepted.append(f"big{k}")
        assert reply["type"] == "error", "16 jobs of 4 MiB fitted a 48 MiB budget"
        assert reply["code"] == "server_busy" and "--memory-budget" in reply["message"], reply
        assert len(accepted) >= 2 and len(accepted) * image.nbytes <= budget
        assert running.server.budget.used() <= budget
        engine.gate.set()
        for job in accepted:
            assert outcome(peer.until_final(job, 120)) == "done"
        # the kept results make room for new work: the oldest are let go
        peer.submit("after", image)
        assert outcome(peer.until_final("after", 120)) == "done"


def test_the_engine_working_memory_is_held_for_the_jobs_that_will_run(
    serve, classic_engine
) -> None:
    """A queued job holds its inputs and the room for its layers; the engine's working
    memory is held once for the largest job that runs or will run (one runs at a time), so
    the jobs that fit are exactly those that leave it room."""
    engine = GatedEngine(classic_engine, working=True)
    budget = 600 * MiB
    running = serve(engine, memory_budget=budget, max_jobs_per_client=64, max_queue=64)
    image = design(1024, 1024, seed=2)
    working = classic_engine.working_bytes(image.shape[0] * image.shape[1])
    held = image.nbytes * 3  # its inputs and twice as much again for its layers
    fitting = (budget - working) // held
    with Peer(running.url, "queued") as peer:
        for k in range(fitting):
            peer.submit(f"q{k}", image)
            assert peer.first_for(f"q{k}", 10)["type"] == "queued"
        assert running.server.budget.usage()["engine"] == working
        peer.submit("over", image)
        reply = peer.first_for("over", 10)
        assert reply.get("code") == "server_busy", reply
        assert "engine" in reply["message"] and "--memory-budget" in reply["message"], reply
        engine.gate.set()
        for k in range(fitting):
            assert outcome(peer.until_final(f"q{k}", 300)) == "done"
        assert running.server.budget.usage()["engine"] == 0


def test_a_big_frame_before_hello_is_answered_with_close_1009(classic_server) -> None:
    sock = raw_connect(classic_server.url)
    sock.settimeout(10)
    try:
        with contextlib.suppress(OSError):  # closed while sending: read what it said
            raw_send(sock, b"\x00" * (1 * MiB))
        opcode, payload = read_frame(sock)
        assert opcode == 0x8, (opcode, payload[:80])
        assert int.from_bytes(payload[:2], "big") == 1009
    finally:
        sock.close()


def test_connections_that_never_say_hello_are_capped_and_timed_out(serve, classic_engine) -> None:
    running = serve(
        classic_engine,
        max_connections_before_hello=8,
        max_connections_before_hello_per_address=2,  # as a server off loopback would have
        hello_timeout_s=8,
    )
    # 2 places per address here, from 4 addresses
    sources = [f"127.0.0.{n}" for n in (1, 1, 2, 2, 3, 3, 4, 4)]
    silent = [raw_connect(running.url, source=source) for source in sources[:2]]
    try:
        with pytest.raises(InvalidStatus) as refused:  # a third from the same address
            connect(running.url, open_timeout=5).close()
        assert refused.value.response.status_code == 503
        silent += [raw_connect(running.url, source=source) for source in sources[2:]]
        with pytest.raises(InvalidStatus) as refused:  # all 8 places taken
            connect(running.url, open_timeout=5, source_address=("127.0.0.9", 0)).close()
        assert refused.value.response.status_code == 503
        raw_send(silent[0], json.dumps({"type": "hello", "protocol": 1, "client": "late"}))
        silent[0].settimeout(10)
        assert read_frame(silent[0])[0] == 0x1  # welcome
        with Peer(running.url, "now") as peer:  # one fewer waiting for hello: room again
            assert peer.welcome["type"] == "welcome"
        # the others, silent, are closed after hello_timeout_s
        for sock in silent[1:]:
            sock.settimeout(10)
            opcode, payload = read_frame(sock)
            assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1008, payload
    finally:
        for sock in silent:
            sock.close()


def test_a_client_that_reads_nothing_is_dropped_after_the_send_timeout(
    serve, classic_engine
) -> None:
    running = serve(classic_engine, send_timeout_s=1.0)
    jobs, socks = stall(running.url, "x")
    try:
        wait_until(lambda: len(running.server.clients) == 2)
        started = time.monotonic()
        wait_until(lambda: not running.server.clients, timeout=60)
        print(f"\nnon-reading clients dropped after {time.monotonic() - started:.1f} s")
        with Peer(running.url, "alive") as peer:  # the server is fine
            image = design(seed=3)
            peer.submit("ok", image)
            assert outcome(peer.until_final("ok", 60)) == "done"
        wait_until(lambda: all(j.finished for j in running.server.results.jobs()), 90)
    finally:
        for sock in socks:
            sock.close()


def test_ended_jobs_are_let_go_on_time_without_any_traffic(serve, classic_engine) -> None:
    engine = GatedEngine(classic_engine)
    running = serve(engine, result_ttl_s=0.5)
    with Peer(running.url, "ttl") as peer:
        peer.submit("run", design(seed=1))
        wait_until(lambda: running.server.worker.running is not None)
        peer.submit("queued", design(seed=2))
        peer.first_for("queued")
        peer.send_json({"type": "cancel", "job": "queued"})
        assert outcome(peer.until_final("queued", 10)) == "cancelled"
        engine.gate.set()
        assert outcome(peer.until_final("run", 60)) == "done"
        wait_until(lambda: not running.server.results.jobs(), timeout=10)  # no traffic
        for kind in ("cancel", "fetch"):
            peer.send_json({"type": kind, "job": "run"})
            assert peer.next(10).get("code") == "unknown_job"


@pytest.mark.parametrize("offset", [2500, 1 << 20])
def test_an_offset_cannot_inflate_the_canvas(serve, classic_engine, tmp_path, offset) -> None:
    running = serve(classic_engine, limits=Limits(max_pixels=512 * 512), output_dir=tmp_path)
    pixel = design(1, 1, seed=0)
    with Peer(running.url, "offset") as peer:
        peer.submit("far", pixel, {"save": "far.psd"}, op="split", name="layer", x=offset, y=offset)
        reply = peer.until_final("far", 30)
        assert [m["type"] for m in reply] == ["error"], reply
        assert reply[0]["code"] == "too_many_pixels" and str(offset + 1) in reply[0]["message"]
        # the same layer within the canvas limit is fine
        peer.submit("near", design(8, 8, seed=1), op="split", name="layer", x=300, y=200)
        result = peer.until_final("near", 60)
        assert outcome(result) == "done" and result[-1]["width"] == 308
    assert not list(tmp_path.iterdir())


def test_memory_budget_counts_cancelled_and_kept_jobs(serve, classic_engine) -> None:
    running = serve(classic_engine, memory_budget=256 * MiB)
    image = design(512, 512, seed=4)
    with Peer(running.url, "kept") as peer:
        peer.submit("k", image)
        messages = peer.until_final("k", 60)
        check_job_complete(Result(messages), image)
        kept = sum(len(m["data"]) for m in messages if m["type"] == "layer")
        usage = running.server.budget.usage()
        assert sum(usage.values()) >= kept, usage


class PeakMemory:
    """The most a server process and its children held (PSS), sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_memory(self.pid)[0])

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_once(url: str, image: np.ndarray) -> None:
    with Client(url, "once") as client:
        client.run("decompose", {}, [image_input(image)], timeout=300)


def refused(run: Callable[[], object]) -> ServerError | None:
    try:
        run()
    except ServerError as error:
        return error
    return None


def test_the_server_and_its_engine_processes_stay_within_the_budget(tmp_path) -> None:
    """The budget counts the engine's working memory too: a job that would need more than
    the whole budget is refused before it runs, naming the flag, and the server's processes
    (its classic workers included) never hold more than the budget plus 300 MiB, while
    small jobs beside it are done."""
    budget_mib = 256
    server, url = start_cli_server(tmp_path, "--memory-budget", str(budget_mib))
    try:
        small = [design(320, 240, seed=k) for k in range(3)]
        big = design(1536, 1536, seed=5)  # the classic engine needs ~500 MB for it
        with PeakMemory(server.pid) as memory, Client(url, "small") as client:
            jobs = [client.submit("decompose", {}, [image_input(image)]) for image in small]
            refusal = refused(lambda: run_once(url, big))
            for job, image in zip(jobs, small, strict=True):
                check_job_complete(client.wait(job, timeout=120), image)
        assert memory.peak <= (budget_mib + 300) * MiB, f"{memory.peak / MiB:.0f} MiB at peak"
        assert refusal is not None and refusal.code == "too_many_pixels", refusal
        assert "--memory-budget" in refusal.message, refusal.message
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


def test_results_already_delivered_are_the_first_let_go_for_room() -> None:
    store = ResultStore(ttl_s=600, max_bytes=1 << 30)
    older, newer = (Job(JobRequest(name, "decompose"), "owner", (1, 1)) for name in "ab")
    for job in (older, newer):
        store.add(job)
        job.finish(JobState.DONE, message_frame(CancelledMessage(job.id)))
    newer.delivered = True  # a client read all of it; the older one no one has yet
    assert store.evict(free_bytes=1) == 1
    assert store.get("owner", "a") is older and store.get("owner", "b") is None
