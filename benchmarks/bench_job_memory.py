"""What one job costs the server's processes, as the memory budget must reserve it.

`layerbridge serve` runs as its own process; one job at a time is decomposed through it
while a thread samples the summed PSS of the server and its child processes (the classic
engine's fork server and the job's worker). Printed per job: its peak over the level
before it, in MiB and MB per megapixel, against what the budget reserves for it
(:func:`layerbridge.budget.working_bytes` plus its inputs and layers), and what is left a
little after its result has expired.

    python benchmarks/bench_job_memory.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.attackers import process_rss, start_server  # noqa: E402
from layerbridge.budget import working_bytes  # noqa: E402
from layerbridge.client import Client  # noqa: E402
from layerbridge.engines.classic import ClassicEngine  # noqa: E402
from tests.helpers import image_input, tree_memory  # noqa: E402
from tests.synthetic import design, flat_design, photo_like  # noqa: E402

MiB = 1 << 20
TTL_S = 3.0


class Peak:
    def __init__(self, pid: int) -> None:
        self.pid, self.value, self.stop = pid, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.value = max(self.value, tree_memory(self.pid)[0])


def images() -> list[tuple[str, np.ndarray]]:
    return [
        ("flat design 2048x2048", flat_design(2048, 2048, seed=5)),
        ("photo-like 2048x2048", photo_like(0, 2048, 2048)),
        ("design 2048x2048", design(0, 2048, 2048)[1]),
        ("photo-like 1024x1024", photo_like(1, 1024, 1024)),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        server, url = start_server(Path(folder), 8192, ttl_s=TTL_S)
        try:
            with Client(url, "warm") as client:
                client.run("decompose", {}, [image_input(flat_design(640, 480, seed=9))])
            peak = Peak(server.pid)
            print("job | layers | peak over before | MB/MP | reserved | left after expiry")
            for label, image in images():
                time.sleep(TTL_S + 3)
                before = tree_memory(server.pid)[0]
                peak.value = before
                with Client(url, "bench") as client:
                    result = client.run("decompose", {}, [image_input(image)], timeout=900)
                grew = peak.value - before
                time.sleep(TTL_S + 6)  # expired, let go and trimmed
                left = tree_memory(server.pid)[0] - before
                pixels = image.shape[0] * image.shape[1]
                reserved = working_bytes(ClassicEngine(), pixels) + 12 * pixels
                print(
                    f"{label} | {len(result.layers)} | {grew / MiB:.0f} MiB | "
                    f"{grew / pixels:.0f} | {reserved / MiB:.0f} MiB | {left / MiB:+.0f} MiB",
                    flush=True,
                )
            peak.stop.set()
            print(f"server process RSS at the end: {process_rss(server.pid) / MiB:.0f} MiB")
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
