"""Soak: minutes of mixed clients, injected engine faults, cancels and abrupt reconnects.

A real server on a loopback port runs the real classic engine behind a fault injector
(a wrapper that, on a random share of jobs, raises, raises CUDA's out-of-memory error or
hangs past the job time limit, and otherwise delegates). Client threads loop: connect,
submit a few jobs, check every finished one (each layer once, indices 0..count-1,
sha256, composite back to the image), cancel some, and vanish without a close frame
mid-job on others, then reconnect and fetch. At the end it prints how many clients and
jobs the server held at once, the faults survived and the server's peak memory.

    python benchmarks/soak.py [--minutes 5] [--clients 16] [--fault-rate 0.1]
    python benchmarks/soak.py --attack [--minutes 10] [--clients 6] [--budget-mib 1024]

``--attack`` runs honest clients beside the attacks of benchmarks/attackers.py against
`layerbridge serve` in its own process, and checks its memory against its budget.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerbridge.client import Client, ServerError, ServerUnavailable  # noqa: E402
from layerbridge.engines.base import Engine, JobContext, JobRequest, Layer  # noqa: E402
from layerbridge.engines.classic import ClassicEngine  # noqa: E402
from layerbridge.imaging import composite  # noqa: E402
from layerbridge.server import LayerBridgeServer, ServerConfig  # noqa: E402
from tests.helpers import image_input, layer_pixels  # noqa: E402
from tests.synthetic import flat_design as design  # noqa: E402

EXPECTED_FAULT_CODES = {"engine_failed", "out_of_memory", "timeout"}


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class FaultInjector(Engine):
    """The classic engine with random injected faults (a test double for fault injection)."""

    def __init__(self, inner: Engine, rate: float, hang_s: float, seed: int = 0) -> None:
        self.inner, self.rate, self.hang_s = inner, rate, hang_s
        self.name, self.ops = inner.name, inner.ops
        self.min_layers, self.max_layers = inner.min_layers, inner.max_layers
        self.random = random.Random(seed)
        self.injected: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        with self.lock:
            roll = self.random.random()
            kind = self.random.choice(("raise", "oom", "hang")) if roll < self.rate else None
            if kind:
                self.injected[kind] += 1
        if kind == "raise":
            raise RuntimeError("injected engine fault")
        if kind == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        if kind == "hang":
            time.sleep(self.hang_s)
        yield from self.inner.run(request, ctx)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


def check(result, image: np.ndarray, tally: Tally) -> None:
    layers = result.layers
    ok = result.done is not None and result.done["layers"] == len(layers)
    ok = ok and [m["index"] for m in layers] == list(range(len(layers)))
    ok = ok and all(hashlib.sha256(m["data"]).hexdigest() == m["sha256"] for m in layers)
    if ok:
        from layerbridge.engines.base import Layer as L

        flat = composite(
            [L(m["name"], layer_pixels(m), m["x"], m["y"]) for m in layers],
            image.shape[1],
            image.shape[0],
        )
        ok = np.abs(flat.astype(int) - image).max() <= 1
    if ok:
        tally.add("layers_verified", len(layers))
    else:
        tally.problem(f"job {result.job}: incomplete or wrong result")


def collect(client: Client, job: str, image: np.ndarray, tally: Tally) -> None:
    try:
        result = client.wait(job, timeout=300)
    except ServerError as error:
        tally.add(f"failed:{error.code}")
        if error.code not in EXPECTED_FAULT_CODES:
            tally.problem(f"job {job}: unexpected {error.code}: {error.message}")
        return
    if result.cancelled:
        tally.add("cancelled")
        return
    check(result, image, tally)
    tally.add("done")


def kill(client: Client) -> None:
    """Vanish without a close frame: a TCP reset."""
    sock = client._ws.socket  # type: ignore[union-attr]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RDWR)
    client._ws = None


def client_loop(n: int, url: str, until: float, tally: Tally) -> None:
    rng = random.Random(n)
    while time.monotonic() < until:
        try:
            client = Client(url, f"soak-{n}")
            client.connect()
            tally.add("connections")
            jobs = {}
            for _ in range(rng.randint(1, 4)):
                size = rng.choice([(64, 48), (160, 120), (320, 240)])
                image = design(*size, seed=rng.randrange(1 << 30))
                jobs[client.submit("decompose", {}, [image_input(image)])] = image
                tally.add("submitted")
            action = rng.random()
            if action < 0.15:
                job = next(iter(jobs))
                client.cancel(job)
            if action > 0.85:
                for job in jobs:  # the server has every submit before the client vanishes
                    next(client.events(job, timeout=60))
                kill(client)
                tally.add("killed_mid_job")
                client = Client(url, f"soak-{n}-back", secret=client.secret)  # the same client
                client.connect()
                for job in jobs:
                    client.fetch(job)
                tally.add("reconnects")
            for job, image in jobs.items():
                collect(client, job, image, tally)
            client.close()
        except (ServerUnavailable, ServerError, OSError) as exc:
            tally.problem(f"client {n}: {type(exc).__name__}: {exc}")
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--attack", action="store_true", help="honest clients beside attacks")
    parser.add_argument("--budget-mib", type=int, default=1024, help="server memory budget")
    args = parser.parse_args()
    if args.attack:
        import tempfile

        from benchmarks.attackers import run_attack_soak

        with tempfile.TemporaryDirectory() as folder:
            return run_attack_soak(args.minutes, args.clients, args.budget_mib, Path(folder))

    engine = FaultInjector(ClassicEngine(), args.fault_rate, hang_s=3.0)
    engine.inner.warm_up()
    config = ServerConfig(port=0, job_timeout_s=2.0, max_queue=4 * args.clients)
    server = LayerBridgeServer(engine, config)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    url = server.url

    baseline = peak = rss()
    held = {"clients": 0, "jobs": 0}
    until = time.monotonic() + args.minutes * 60
    tally = Tally()
    threads = [
        threading.Thread(target=client_loop, args=(n, url, until, tally), daemon=True)
        for n in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        peak = max(peak, rss())
        held["clients"] = max(held["clients"], len(server.clients))
        unfinished = sum(not job.finished for job in server.results.jobs())
        held["jobs"] = max(held["jobs"], unfinished)
    # afterwards a fresh client still gets a result
    with Client(url, "after-soak") as client:
        image = design(seed=1)
        check(client.run("decompose", {}, [image_input(image)], timeout=60), image, tally)
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)

    counts = tally.counts
    faults = sum(engine.injected.values())
    survived = sum(v for k, v in counts.items() if k.split(":")[-1] in EXPECTED_FAULT_CODES)
    print(f"soak: {args.minutes:g} min, {args.clients} client threads")
    print(f"  held at once: {held['clients']} clients x {held['jobs']} unfinished jobs")
    print(
        f"  jobs: submitted {counts['submitted']}, done {counts['done']}, "
        f"cancelled {counts['cancelled']}, layers verified {counts['layers_verified']}"
    )
    print(
        f"  connections {counts['connections']}, killed mid-job {counts['killed_mid_job']}, "
        f"reconnects {counts['reconnects']}"
    )
    print(
        f"  faults injected {faults} ({dict(engine.injected)}), failed jobs seen by "
        f"clients {survived} ({ {k: v for k, v in counts.items() if k.startswith('failed')} })"
    )
    print(
        f"  server process RSS: baseline {baseline / 2**20:.0f} MiB, "
        f"peak {peak / 2**20:.0f} MiB, end {rss() / 2**20:.0f} MiB"
    )
    for problem in tally.problems[:20]:
        print("  PROBLEM:", problem)
    return 1 if tally.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
