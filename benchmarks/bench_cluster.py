"""The worker pool on Ray Serve, measured here with tiny-engine replicas on the CPU.

Every job goes through the real websocket server and a real client, as in production.

1. Throughput: ``--jobs`` tiny jobs from 4 clients at once, on a pool of 1 replica holding
   2 CPUs, then of 2 replicas holding 1 CPU each (the same machine either way): jobs per
   second and their ratio. On a GPU cluster each replica has its own GPU, so this is the
   ratio's floor: it shows the pool runs jobs side by side, not that CPUs add up.
2. Overhead: one job at a time, on the 1-replica pool vs the local tiny engine in the
   server's own process with the same thread count: the ratio of median times (aim <= 1.10).
3. Driver memory: the front's RSS every 10 jobs over ``--rss-jobs`` jobs of a larger image
   (4 layers of ``--rss-size`` squared) on the 2-replica pool (aim: flat after warm-up).

    python benchmarks/bench_cluster.py [--jobs 8] [--repeat 5] [--rss-jobs 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerbridge.cluster.pool import PoolConfig, WorkerPool  # noqa: E402
from layerbridge.engines.base import Engine  # noqa: E402
from layerbridge.engines.registry import create_engine  # noqa: E402
from layerbridge.server import ServerConfig  # noqa: E402
from tests.helpers import RunningServer, image_input, start_server, stop_server  # noqa: E402

CLIENTS = 4
#: Jobs each client keeps submitted at once.
IN_FLIGHT = 2
JOB = {"layers": 2, "prompt": "a poster"}


def picture(size: int) -> np.ndarray:
    rng = np.random.default_rng(size)
    image = np.full((size, size, 4), 230, np.uint8)
    image[..., :3] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8) // 4 + 160
    image[size // 5 : size // 2, size // 4 : 3 * size // 4, :3] = (200, 20, 60)
    return image


def run_jobs(server: RunningServer, jobs: int, clients: int, size: int = 48,
             params: dict[str, Any] | None = None,
             after_each: Callable[[int], None] = lambda done: None) -> float:
    """Run ``jobs`` jobs from ``clients`` clients at once; return the seconds until all done."""
    image = [image_input(picture(size))]
    done = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client_loop(index: int, count: int) -> None:
        nonlocal done
        try:
            with server.client(f"bench-{index}") as client:
                waiting: list[str] = []
                for n in range(count + IN_FLIGHT):
                    if n < count:  # a plug-in keeps a few jobs queued, not all of them
                        waiting.append(client.submit(
                            "decompose", {**JOB, **(params or {}), "seed": n}, image))
                    if len(waiting) == IN_FLIGHT or (n >= count and waiting):
                        result = client.wait(waiting.pop(0), timeout=1800)
                        assert result.done is not None
                        with lock:
                            done += 1
                            after_each(done)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    shares = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(i, n)) for i, n in enumerate(shares)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def one_job_s(server: RunningServer) -> float:
    return run_jobs(server, 1, 1)


def with_pool(config: PoolConfig, body: Callable[[Engine, RunningServer], None]) -> None:
    pool = WorkerPool(config)
    try:
        engine = pool.start()
        # Results kept for a second: the driver's memory then shows what the pool keeps,
        # not what the result store is asked to keep for fetch.
        server = start_server(engine, ServerConfig(result_ttl_s=1.0))
        try:
            one_job_s(server)  # warm-up: the first job on a replica loads its pipeline fully
            body(engine, server)
        finally:
            stop_server(server)
    finally:
        pool.stop()


def report(what: str, value: Any) -> Any:
    print(f"  ({what}: {value})", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rss-jobs", type=int, default=100)
    parser.add_argument("--rss-size", type=int, default=512)
    parser.add_argument("--only-rss", action="store_true", help="measure the driver's memory only")
    args = parser.parse_args()
    if args.only_rss:
        with_pool(PoolConfig("tiny", {"steps": 2}, replicas=2), lambda engine, server: print_rss(
            measure_rss(server, args.rss_jobs, args.rss_size), args.rss_jobs, args.rss_size))
        return
    import torch

    torch.set_num_threads(2)  # the local baseline gets what the 1-replica pool's replica gets
    local = create_engine("tiny", steps=2)
    local.warm_up()
    local_server = start_server(local, ServerConfig())
    one_job_s(local_server)
    results: dict[str, Any] = {}

    def single_replica(engine: Engine, server: RunningServer) -> None:
        results["1 replica"] = report("1 replica", run_jobs(server, args.jobs, CLIENTS))
        remote, here = [], []
        for _ in range(args.repeat):  # interleaved, so that load from elsewhere hits both
            remote.append(one_job_s(server))
            here.append(one_job_s(local_server))
        results["one job"] = report("one job (Ray, local)",
                                    (statistics.median(remote), statistics.median(here)))

    def two_replicas(engine: Engine, server: RunningServer) -> None:
        results["2 replicas"] = report("2 replicas", run_jobs(server, args.jobs, CLIENTS))
        results["rss"] = measure_rss(server, args.rss_jobs, args.rss_size)

    try:
        with_pool(PoolConfig("tiny", {"steps": 2}, replicas=1, cpus_per_replica=2), single_replica)
        with_pool(PoolConfig("tiny", {"steps": 2}, replicas=2, cpus_per_replica=1), two_replicas)
    finally:
        stop_server(local_server)

    one, two = results["1 replica"], results["2 replicas"]
    print(f"throughput, {args.jobs} tiny jobs from {CLIENTS} clients:")
    print(f"  1 replica  (2 CPUs): {one:7.1f} s  {args.jobs / one:.3f} jobs/s")
    print(f"  2 replicas (1 CPU each): {two:7.1f} s  {args.jobs / two:.3f} jobs/s")
    print(f"  ratio 2 vs 1: {one / two:.2f}x")
    remote, here = results["one job"]
    print(f"one job, median of {args.repeat}: Ray {remote:.2f} s, local {here:.2f} s, "
          f"overhead ratio {remote / here:.3f} (aim <= 1.10)")
    print_rss(results["rss"], args.rss_jobs, args.rss_size)


def measure_rss(server: RunningServer, jobs: int, size: int) -> list[tuple[int, float, float]]:
    """The driver's RSS, and the part of it that is shared memory (pages of Ray's object
    store it has read), in MiB, before and after every 10 jobs (2 clients, 4 layers each)."""
    process = psutil.Process()

    def memory(done: int) -> tuple[int, float, float]:
        info = process.memory_info()
        return done, info.rss / 2**20, info.shared / 2**20

    samples = [memory(0)]

    def sample(done: int) -> None:
        if done % 10 == 0:
            samples.append(report("rss, shared", memory(done)))

    run_jobs(server, jobs, 2, size, {"layers": 4}, sample)
    return samples


def print_rss(samples: list[tuple[int, float, float]], jobs: int, size: int) -> None:
    print(f"driver RSS over {jobs} jobs of {size}x{size}, 4 layers:")
    for done, rss, shared in samples:
        print(f"  after {done:4d} jobs: {rss:7.1f} MiB ({shared:7.1f} MiB shared, "
              f"{rss - shared:7.1f} MiB private)")
    warm = [sample for sample in samples if sample[0] >= 20]
    if len(warm) >= 2:
        (first, rss0, shared0), (last, rss1, shared1) = warm[0], warm[-1]
        per_job = (rss1 - rss0) / (last - first)
        print(f"  growth after 20 jobs: {rss1 - rss0:+.1f} MiB ({per_job:+.2f} MiB/job), "
              f"of which private {(rss1 - shared1) - (rss0 - shared0):+.1f} MiB")


if __name__ == "__main__":
    main()
