"""The soak's attack mode: honest clients beside the attacks that once hurt the server.

`layerbridge serve` runs as its own process (so its memory is measured alone, from
/proc) with a memory budget. Honest client threads loop: connect, submit designs, check
every layer (each once, sha256, composite back to the image), sometimes vanish and come
back with their secret to fetch (from 127.0.0.1). Attacker threads, for the first part of
the run, the floods from addresses of their own (127.0.0.5 to .8):

- churn: submit and cancel 1x1 jobs as fast as the server answers;
- snoop: fetch and cancel job ids it did not submit;
- crowd: eight connections from one address submitting until refused, never reading;
- strangers: connections that send big frames before hello, or never say it;
- hog: 2048x2048 jobs, to press on the memory budget;
- saver: saves into names that exist, a symlink and a FIFO in the output folder.

Then the attackers leave and the honest clients go on. Printed: honest jobs done and
verified, what the attackers got, the server's RSS (baseline, peak, end) against its
budget. Run through `python benchmarks/soak.py --attack [--minutes 10]`.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from layerbridge.client import Client, ServerError, ServerUnavailable
from tests.helpers import (
    Peer,
    hello,
    image_input,
    process_tree,
    raw_connect,
    raw_send,
    submit,
    tree_memory,
)
from tests.synthetic import flat_design as design

MiB = 1 << 20


def process_rss(pid: int) -> int:
    return status_field(pid, "VmRSS")


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


def start_server(out: Path, budget_mib: int, ttl_s: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "layerbridge.cli", "serve", "--port", "0"]
        + ["--output-dir", str(out), "--memory-budget", str(budget_mib)]
        + ["--result-ttl", str(ttl_s), "--send-timeout", "5", "--hello-timeout", "3"]
        + ["--max-jobs-per-address", "64", "--max-queue", "128"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = server.stdout.readline()  # type: ignore[union-attr]
    match = re.search(r"ws://\S+", line)
    if not match:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return server, match.group(0)


class TreeMemory:
    """The memory of the server and its child processes: baseline, peak, after.

    The bar is the sum of PSS over the tree, sampled every tenth of a second; the sum of
    RSS (shared pages counted in each process) and the server process's own exact peak
    (VmHWM, restarted at the baseline) are printed beside it.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM counts from here
        self.baseline_pss, self.baseline_rss = tree_memory(pid)
        self.baseline_server = process_rss(pid)
        self.peak_pss, self.peak_rss = self.baseline_pss, self.baseline_rss
        self.peak_children = 0
        self.baseline_processes = len(process_tree(pid))
        self.drained_s = 0.0
        self.after_pss = self.after_rss = self.after_server = self.server_hwm = 0

    def sample(self) -> None:
        pss, rss = tree_memory(self.pid)
        self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
        self.peak_children = max(self.peak_children, len(process_tree(self.pid)) - 1)

    def sample_after(self) -> None:
        self.server_hwm = status_field(self.pid, "VmHWM")
        self.after_pss, self.after_rss = tree_memory(self.pid)
        self.after_server = process_rss(self.pid)

    def lines(self, budget_mib: int) -> list[str]:
        def row(name: str, base: int, peak: int, after: int) -> str:
            return (
                f"{name:<34} baseline {base / MiB:5.0f} MiB, peak {peak / MiB:5.0f} MiB, "
                f"after the attackers left {after / MiB:5.0f} MiB ({(after - base) / MiB:+.0f})"
            )

        return [
            f"memory (limit: budget + 300 = {budget_mib + 300} MiB at peak, "
            f"baseline + 50 MiB after; up to {self.peak_children} child processes; the "
            f"server's queue ran dry {self.drained_s:.0f} s after the clients stopped, 'after' "
            "is 25 s later):",
            row(
                "  server + children, PSS (the bar)",
                self.baseline_pss,
                self.peak_pss,
                self.after_pss,
            ),
            row(
                "  server + children, sum of RSS", self.baseline_rss, self.peak_rss, self.after_rss
            ),
            row(
                "  server process RSS (peak: VmHWM)",
                self.baseline_server,
                self.server_hwm,
                self.after_server,
            ),
        ]


def until_idle(pid: int, processes: int, quiet_s: float = 3.0, limit_s: float = 600.0) -> float:
    """Wait until the server has run no job for ``quiet_s`` (no engine worker process beyond
    the ``processes`` it had when idle): the attackers' queued jobs are still the server's
    work after they leave. Return how long that took."""
    start = quiet_since = time.monotonic()
    while time.monotonic() - start < limit_s:
        time.sleep(0.2)
        if len(process_tree(pid)) > processes:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
    return time.monotonic() - start


def status_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


# --- honest clients -------------------------------------------------------------------


def honest_loop(n: int, url: str, until: float, tally: Tally) -> None:
    rng = random.Random(1000 + n)
    secret: str | None = None
    while time.monotonic() < until:
        try:
            client = Client(url, f"honest-{n}", secret=secret)
            client.connect()
            secret = client.secret
            jobs = {}
            for _ in range(rng.randint(1, 3)):
                size = rng.choice([(64, 48), (160, 120), (320, 240)])
                image = design(*size, seed=rng.randrange(1 << 30))
                jobs[client.submit("decompose", {}, [image_input(image)])] = image
                tally.add("honest_submitted")
            if rng.random() < 0.2:  # vanish and come back with the secret
                client.close()
                client = Client(url, f"honest-{n}", secret=secret)
                client.connect()
                for job in jobs:
                    client.fetch(job)
                tally.add("honest_reconnects")
            for job, image in jobs.items():
                finish_honest_job(client, job, image, tally)
            client.close()
        except (ServerUnavailable, OSError) as exc:
            tally.problem(f"honest client {n}: {type(exc).__name__}: {exc}")
            time.sleep(0.5)


#: A refusal an honest client answers as the message says: by trying again a little later.
BUSY = ("server_busy", "queue_full", "too_many_jobs")


def finish_honest_job(client: Client, job: str, image: Any, tally: Tally, tries: int = 60) -> None:
    """Wait for ``job`` and verify it; when the server was too busy to take it, submit it
    again after a second, as a client would, until it is done."""
    from benchmarks.soak import check  # one verification for both soak modes

    for _ in range(tries):
        try:
            result = client.wait(job, timeout=600)
        except ServerError as error:
            tally.add(f"honest_refused:{error.code}")
            if error.code not in BUSY:
                tally.problem(f"honest job {job}: {error.code}: {error.message}")
                return
            time.sleep(1.0)
            job = client.submit("decompose", {}, [image_input(image)])
            continue
        check(result, image, tally)
        tally.add("honest_done")
        return
    tally.problem(f"an honest job was refused {tries} times: never done")


# --- attackers ------------------------------------------------------------------------


def churn(url: str, until: float, tally: Tally) -> None:
    tiny = design(1, 1, seed=0)
    with Peer(url, "churn", source="127.0.0.5") as peer:
        k = 0
        while time.monotonic() < until:
            for _ in range(50):
                peer.submit(f"c{k}", tiny)
                peer.send_json({"type": "cancel", "job": f"c{k}"})
                k += 1
            peer.drain(0.05)
            tally.add("churn_pairs", 50)


def snoop(url: str, until: float, tally: Tally) -> None:
    rng = random.Random(7)
    with Peer(url, "snoop", source="127.0.0.6") as peer:
        while time.monotonic() < until:
            job = f"{rng.randrange(1 << 64):x}"
            peer.send_json({"type": rng.choice(("fetch", "cancel")), "job": job})
            reply = peer.next(30)
            tally.add(f"snoop_{reply.get('code', reply['type'])}")
            if reply.get("code") != "unknown_job":
                tally.problem(f"snoop got {reply}")


def crowd(url: str, until: float, tally: Tally) -> None:
    """Eight connections from one address submit until refused and never read."""
    image = design(512, 512, seed=3)
    while time.monotonic() < until:
        socks = [raw_connect(url, rcvbuf=4096, source="127.0.0.7") for _ in range(8)]
        for n, sock in enumerate(socks):
            raw_send(sock, hello(f"crowd-{n}"))
            for k in range(8):
                for frame in submit(f"crowd{n}-{k}-{time.monotonic_ns()}", image):
                    raw_send(sock, frame)
        tally.add("crowd_submits", 64)
        time.sleep(8)  # the server drops them once its sends wait past --send-timeout
        for sock in socks:
            sock.close()


def strangers(url: str, until: float, tally: Tally) -> None:
    while time.monotonic() < until:
        for _ in range(4):
            sock = raw_connect(url, source="127.0.0.8")
            try:
                raw_send(sock, b"\0" * (8 * MiB))  # closed with 1009 after the header
            except OSError:
                tally.add("stranger_big_frame_closed")
            sock.close()
        silent = [raw_connect(url, source="127.0.0.8") for _ in range(4)]
        time.sleep(4)  # past --hello-timeout: closed by the server
        for sock in silent:
            sock.settimeout(1)
            try:
                sock.recv(16)  # a close frame, or the end of the stream
                tally.add("stranger_silent_closed")
            except TimeoutError:
                tally.problem("a connection that never said hello was kept open")
            sock.close()


def hog(url: str, until: float, tally: Tally) -> None:
    image = design(2048, 2048, seed=5)
    with Client(url, "hog") as client:
        while time.monotonic() < until:
            try:
                client.run("decompose", {}, [image_input(image)], timeout=600)
                tally.add("hog_done")
            except ServerError as error:
                tally.add(f"hog_refused:{error.code}")
                time.sleep(1)


def saver(url: str, out: Path, until: float, tally: Tally) -> None:
    outside = out.parent / "outside.txt"
    outside.write_text("keep")
    (out / "trap.psd").unlink(missing_ok=True)
    (out / "trap.psd").symlink_to(outside)
    if not (out / "pipe.psd").exists():
        os.mkfifo(out / "pipe.psd")
    with Client(url, "saver") as client:
        while time.monotonic() < until:
            for name in ("trap.psd", "pipe.psd", "same.ora"):
                result = client.run(
                    "decompose", {"save": name}, [image_input(design(seed=1))], timeout=600
                )
                saved = Path(result.done["saved"]) if result.done else None
                ok = saved is not None and saved.is_file() and not saved.is_symlink()
                tally.add("saver_saved" if ok else "saver_problem")
    if outside.read_text() != "keep":
        tally.problem("a save wrote through the symlink")


# --- the run --------------------------------------------------------------------------


def run_attack_soak(minutes: float, honest: int, budget_mib: int, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    # The attackers' own connections fail their keepalive pings (the server stops reading
    # a flooder): that is the point, and not worth a traceback each.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    server, url = start_server(out, budget_mib, ttl_s=20.0)
    tally = Tally()
    try:
        with Client(url, "warm") as client:  # the engine's working memory, reached once
            client.run("decompose", {}, [image_input(design(640, 480, seed=9))], timeout=300)
        time.sleep(1)
        memory = TreeMemory(server.pid)
        started = time.monotonic()
        end = started + minutes * 60
        attacks_end = started + minutes * 60 * 0.6
        threads = [
            threading.Thread(target=honest_loop, args=(n, url, end, tally), daemon=True)
            for n in range(honest)
        ]
        for attack in (churn, snoop, crowd, strangers, hog):
            threads.append(threading.Thread(target=guarded, args=(attack, url, attacks_end, tally)))
        threads.append(
            threading.Thread(
                target=guarded, args=(lambda u, e, t: saver(u, out, e, t), url, attacks_end, tally)
            )
        )
        for thread in threads:
            thread.daemon = True
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(0.1)
            memory.sample()
            if time.monotonic() > end + 900:
                tally.problem("clients still running 15 minutes after the end")
                break
        memory.drained_s = until_idle(server.pid, memory.baseline_processes)
        time.sleep(25)  # past the result TTL: kept results let go
        memory.sample_after()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    return report(minutes, honest, budget_mib, tally, memory)


def guarded(attack: Any, url: str, until: float, tally: Tally) -> None:
    """An attacker that gets cut off (that is the point) starts over until its time is up."""
    while time.monotonic() < until:
        try:
            attack(url, until, tally)
        except Exception as exc:  # noqa: BLE001 - being cut off is what an attacker gets
            tally.add(f"{attack.__name__}_cut_off:{type(exc).__name__}")
            time.sleep(0.2)


def report(minutes: float, honest: int, budget_mib: int, tally: Tally, memory: TreeMemory) -> int:
    counts = tally.counts
    print(f"attack soak: {minutes:g} min, {honest} honest clients, budget {budget_mib} MiB")
    honest_counts = {k: v for k, v in counts.items() if k.startswith("honest")}
    print(f"  honest: {honest_counts}, layers verified {counts['layers_verified']}")
    attacks = {k: v for k, v in counts.items() if not k.startswith(("honest", "layers"))}
    print(f"  attackers: {attacks}")
    for line in memory.lines(budget_mib):
        print("  " + line)
    if memory.peak_pss > (budget_mib + 300) * MiB:
        tally.problem("peak memory of the server's processes above the budget + 300 MiB")
    if memory.after_pss - memory.baseline_pss > 50 * MiB:
        tally.problem("memory of the server's processes not back within 50 MiB of the baseline")
    for problem in tally.problems[:20]:
        print("  PROBLEM:", problem)
    return 1 if tally.problems else 0
