"""`layerbridge serve --workers ray` as a user runs it: a real process, Ray, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from layerbridge.client import Client
from tests.helpers import image_input

LAYERBRIDGE = [sys.executable, "-m", "layerbridge.cli"]


def ray_processes_of(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if child.is_running()]


@pytest.mark.timeout(600)
def test_serve_on_ray_workers_answers_and_leaves_nothing_behind(tmp_path: Path) -> None:
    log = (tmp_path / "serve.log").open("w")  # Ray logs a lot: a pipe left unread would block
    server = subprocess.Popen(
        [*LAYERBRIDGE, "serve", "--port", "0", "--output-dir", str(tmp_path),
         "--workers", "ray", "--replicas", "1"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    started: list[psutil.Process] = []
    try:
        line = server.stdout.readline()
        assert "on 1 Ray workers on ws://127.0.0.1:" in line, (tmp_path / "serve.log").read_text()
        started = ray_processes_of(server.pid)
        assert any(process.name() == "raylet" for process in started)
        image = np.full((24, 32, 4), 255, np.uint8)
        image[4:16, 6:20, :3] = (20, 90, 200)
        with Client(line.split()[-1], "cli-cluster") as client:
            assert client.welcome["capabilities"]["workers"] == 1
            assert client.welcome["engine"] == "classic"
            result = client.run("decompose", {"layers": 2}, [image_input(image)], timeout=300)
        assert result.done is not None and len(result.layers) == 2
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(120)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    deadline = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started):
        assert time.monotonic() < deadline, [p.name() for p in started if p.is_running()]
        time.sleep(0.5)


def test_pool_options_need_ray_workers() -> None:
    run = subprocess.run(
        [*LAYERBRIDGE, "serve", "--port", "0", "--replicas", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "need --workers ray" in run.stderr


def test_a_pool_needs_at_least_one_replica() -> None:
    run = subprocess.run(
        [*LAYERBRIDGE, "serve", "--port", "0", "--workers", "ray", "--replicas", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "--replicas must be at least 1" in run.stderr
