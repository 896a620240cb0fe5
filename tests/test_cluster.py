"""A pool of two tiny-engine replicas on a real local Ray cluster, behind the real server.

The cluster is started once for the module (about a minute) and every job goes through the
websocket server and a real client. The replicas run on the CPU, one job each at a time;
what the tests learn from inside the pool (which replica ran a job, whether a cancelled run
had stopped before the next began) comes from the replicas' own ``Started`` events, which
the front keeps in ``RemoteEngine.starts``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import psutil
import pytest

from layerbridge.client import ServerError
from layerbridge.cluster.events import Started
from layerbridge.cluster.pool import PoolConfig, WorkerPool
from layerbridge.protocol import Limits
from tests.helpers import RunningServer, image_input

pytestmark = pytest.mark.timeout(900)

REPLICAS = 2
#: A job long enough to act on while it denoises (a step takes about 0.1-1 s here).
LONG_JOB = {"layers": 2, "steps": 20, "prompt": "a long job"}
#: A job that outlasts everything a test does while it runs; the test cancels it.
ENDLESS_JOB = {"layers": 2, "steps": 200, "prompt": "an endless job"}
#: Seconds a killed replica may take to be replaced (its engine is built again).
REPLACE_S = 240


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(PoolConfig("tiny", {"steps": 2}, replicas=REPLICAS))
    try:
        pool.start()
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def server(serve, pool) -> RunningServer:
    return serve(pool.engine)


def picture(width: int = 48, height: int = 32) -> np.ndarray:
    image = np.full((height, width, 4), 230, np.uint8)
    image[6:22, 8:30, :3] = (200, 20, 60)
    return image


def digests(layers: list[dict]) -> list[str]:
    """Each layer's digest, checked once against the bytes that arrived."""
    for layer in layers:
        assert hashlib.sha256(layer["data"]).hexdigest() == layer["sha256"], layer["name"]
    return [layer["sha256"] for layer in layers]


def runs_of(pool: WorkerPool, job: str) -> list[Started]:
    """The replica runs of ``job``, first first (a retried job has two)."""
    assert pool.engine is not None
    return [started for job_id, started in list(pool.engine.starts) if job_id == job]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def kill_replica(started: Started) -> None:
    os.kill(started.pid, signal.SIGKILL)


def wait_for_full_pool(pool: WorkerPool) -> None:
    wait_until(lambda: pool.running_replicas() == REPLICAS, REPLACE_S, "the replicas")


# --- the ops ---------------------------------------------------------------------------


def test_welcome_announces_the_replicas_engine(server) -> None:
    with server.client() as client:
        welcome = client.welcome
    assert welcome["engine"] == "tiny"
    assert set(welcome["capabilities"]["ops"]) == {"decompose", "generate", "regenerate", "split"}
    assert welcome["capabilities"]["resolutions"] == [640, 1024]


def test_every_op_runs_on_a_replica_and_its_layers_arrive_intact(server, pool) -> None:
    document = picture(64, 48)
    layer = np.zeros((20, 24, 4), np.uint8)
    layer[2:18, 3:21] = (40, 160, 40, 255)
    with server.client("ops") as client:
        jobs = [  # submitted together: they share the two replicas
            client.submit("decompose", {"layers": 2, "seed": 5, "prompt": "box"},
                          [image_input(document)]),
            client.submit("split", {"layers": 2, "seed": 2, "prompt": "parts"},
                          [image_input(layer, "layer", 30, 10)]),
            client.submit("generate", {"prompt": "a lighthouse", "layers": 1, "seed": 4,
                                       "width": 96, "height": 64}),
            client.submit("regenerate", {"prompt": "make it blue", "seed": 8, "resolution": 640},
                          [image_input(layer, "layer", 30, 10), image_input(document, "document")]),
        ]
        decomposed, split, generated, regenerated = [client.wait(job, timeout=600)
                                                     for job in jobs]
    assert [m["name"] for m in decomposed.layers] == ["Background", "Layer 1"]
    assert len(digests(decomposed.layers)) == 2 and len(digests(split.layers)) == 2
    for message in split.layers:  # the parts come back at the layer's place
        assert message["x"] >= 30 and message["x"] + message["width"] <= 54
    assert generated.preview is not None and len(digests(generated.layers)) == 1
    assert (generated.done["width"], generated.done["height"]) == (96, 64)
    (message,) = regenerated.layers
    digests(regenerated.layers)
    # Regenerate cuts the edited layer out again (its shape may change), inside the layer's box.
    assert message["x"] >= 30 and message["y"] >= 10
    assert message["x"] + message["width"] <= 54 and message["y"] + message["height"] <= 30
    for result in (decomposed, split, generated, regenerated):
        (run,) = runs_of(pool, result.job)  # each ran once, on one replica
        assert run.busy == 1


def test_an_engine_error_in_a_replica_reaches_the_client_with_its_code_and_message(
    serve, pool
) -> None:
    # The server admits up to 12 layers; the engine itself refuses more than 10, in the replica.
    server = serve(pool.engine, limits=Limits(max_layers=12))
    with server.client("errors") as client:
        job = client.submit("decompose", {"layers": 11, "prompt": "x"}, [image_input(picture())])
        with pytest.raises(ServerError) as raised:
            client.wait(job, timeout=300)
    assert raised.value.code == "bad_params"
    assert raised.value.message == "layers must be 1..10"
    assert len(runs_of(pool, job)) == 1  # raised in the replica, not refused in front


# --- two workers ----------------------------------------------------------------------------


def test_four_clients_two_jobs_each_all_done_two_at_once(server, pool) -> None:
    image = [image_input(picture())]
    results: dict[str, list[str]] = {}
    seeds: dict[str, int] = {}
    errors: list[BaseException] = []

    def one_client(index: int) -> None:
        try:
            with server.client(f"client-{index}") as client:
                jobs = [client.submit("decompose", {"layers": 2, "seed": seed, "prompt": "x"},
                                      image) for seed in (1, 2)]
                for job, seed in zip(jobs, (1, 2), strict=True):
                    result = client.wait(job, timeout=600)
                    assert result.done is not None
                    results[job], seeds[job] = digests(result.layers), seed
        except BaseException as exc:  # raised again below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 8
    kept = {job.id: job for job in server.server.results.jobs()}
    jobs = [kept.get(job) for job in results]
    spans = [(job.started_at, job.finished_at) for job in jobs if job is not None]
    assert len(spans) == 8
    overlapping = [(a, b) for a, b in itertools.combinations(spans, 2)
                   if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, "no two jobs ran at the same time"
    pids = {runs_of(pool, job)[0].pid for job in results}
    assert len(pids) == REPLICAS
    for seed in (1, 2):  # the same job gives the same bytes on either replica
        assert len({tuple(results[job]) for job in results if seeds[job] == seed}) == 1


def test_cancel_stops_within_a_step_and_the_replica_takes_no_job_before(server, pool) -> None:
    with server.client("busy") as busy, server.client("cancels") as client:
        other = run_until_denoising(busy, ENDLESS_JOB)  # keeps the other replica busy
        job = run_until_denoising(client, LONG_JOB)
        # Queued in front while both replicas are busy: it starts the moment a worker is free,
        # on the replica whose run was just cancelled, the only one free.
        following = client.submit("decompose", {"layers": 2, "seed": 1, "prompt": "x"},
                                  [image_input(picture())])
        client.cancel(job)
        assert [m["type"] for m in client.events(job, timeout=300)][-1] == "cancelled"
        result = client.wait(following, timeout=300)
        busy.cancel(other)
        assert [m["type"] for m in busy.events(other, timeout=300)][-1] == "cancelled"
    assert result.done is not None and len(digests(result.layers)) == 2
    (cancelled,) = runs_of(pool, job)
    (after,) = runs_of(pool, following)
    assert after.pid == cancelled.pid
    assert after.busy == 1  # never two engine runs at once in one replica
    # The replica's last finished run before this one was the cancelled one: the new job
    # waited for that run's engine to stop, which it did within one step of the cancel.
    assert after.previous is not None and after.previous.job == job
    assert after.previous.state == "cancelled"
    assert after.previous.steps_after_cancel is not None
    assert after.previous.steps_after_cancel <= 1


# --- a replica dies ----------------------------------------------------------------------


def run_until_denoising(client, params: dict) -> str:
    """Submit a long job and return its id once the client has seen it denoise."""
    job = client.submit("decompose", params, [image_input(picture())])
    for message in client.events(job, timeout=300):
        if message["type"] == "progress" and message.get("stage") == "denoise":
            return job
        assert message["type"] in ("queued", "progress"), message
    raise AssertionError("the job ended before it denoised")


def test_killing_the_busy_replica_runs_the_job_again_with_the_same_seed(server, pool) -> None:
    wait_for_full_pool(pool)
    with server.client("killed") as client:
        job = run_until_denoising(client, {**LONG_JOB, "seed": None})
        (first,) = runs_of(pool, job)
        kill_replica(first)
        result = client.wait(job, timeout=600)
    assert result.done is not None and len(digests(result.layers)) == 2
    first, second = runs_of(pool, job)
    assert second.pid != first.pid  # run again on the other replica
    with server.client("after") as client:  # the server keeps serving
        after = client.run("decompose", {"layers": 2, "seed": 1, "prompt": "x"},
                           [image_input(picture())], timeout=300)
    assert len(digests(after.layers)) == 2
    wait_for_full_pool(pool)  # and the pool gets its replica back


def test_a_job_whose_replica_dies_twice_fails_with_worker_lost(server, pool) -> None:
    wait_for_full_pool(pool)
    with server.client("lost") as client:
        job = run_until_denoising(client, {**LONG_JOB, "seed": 3})
        (first,) = runs_of(pool, job)
        kill_replica(first)
        wait_until(lambda: len(runs_of(pool, job)) == 2, 120, "the job's second run")
        kill_replica(runs_of(pool, job)[1])
        with pytest.raises(ServerError) as raised:
            client.wait(job, timeout=300)
    assert raised.value.code == "worker_lost"
    assert "submit the job again" in raised.value.message
    wait_for_full_pool(pool)
    with server.client("after") as client:
        after = client.run("decompose", {"layers": 2, "seed": 1, "prompt": "x"},
                           [image_input(picture())], timeout=300)
    assert len(digests(after.layers)) == 2


# --- the network ---------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def inet_connections(process: psutil.Process) -> list:
    try:
        return process.net_connections(kind="inet")
    except psutil.NoSuchProcess:  # a worker that ended since it was listed
        return []


def _process_names() -> list[str]:
    names = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # ended since it was listed
            names.append(process.name())
    return names


def test_every_ray_listener_is_on_loopback(pool) -> None:
    wait_for_full_pool(pool)  # replaced replicas included
    # Serve may still count a replica killed by an earlier test as running until its health
    # check fails; the check below must see the processes of both that serve.
    wait_until(lambda: sum("ServeReplica" in name for name in _process_names()) >= REPLICAS,
               REPLACE_S, "the replicas' processes")
    ray_processes = psutil.Process().children(recursive=True)
    names = _process_names()
    assert "gcs_server" in names and "raylet" in names
    listeners = [
        (process.name(), connection.laddr)
        for process in [psutil.Process(), *ray_processes]
        for connection in inet_connections(process)
        if connection.status == psutil.CONN_LISTEN
    ]
    assert len(listeners) >= 8  # gcs, raylet, agents, replicas: the check saw them
    exposed = [(name, address) for name, address in listeners if not is_loopback(address.ip)]
    assert exposed == []
