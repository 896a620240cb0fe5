"""`layerbridge serve --engine tiny --cache ...` as a user runs it: every op through the real
server, the same bytes twice for a seed, and ``done.timings`` saying how many transformer
forwards were computed and how many the step cache skipped."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from layerbridge.client import Client
from tests.helpers import image_input, start_cli_server

STEPS = 4  # the tiny engine's cache computes one step, then may reuse (see engines/tiny.py)


def start(*options: str) -> tuple[subprocess.Popen, str]:
    """The tiny engine served as a user runs it, saving (if asked) into a fresh folder."""
    return start_cli_server(Path(tempfile.mkdtemp(prefix="layerbridge-")), "--engine", "tiny",
                            *options)


@pytest.fixture(scope="module", params=["dbcache", "fbcache"])
def cached_server(request) -> Iterator[tuple[str, str]]:
    server, url = start("--cache", request.param)
    try:
        yield request.param, url
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(60) == 0


def picture(width: int = 40, height: int = 32) -> np.ndarray:
    image = np.full((height, width, 4), 220, np.uint8)
    image[6:22, 8:30, :3] = (200, 20, 60)
    return image


def layer_bytes(result) -> list[bytes]:
    return [bytes(message["data"]) for message in result.layers]


def test_the_same_seed_gives_the_same_bytes_and_the_cache_skips(cached_server) -> None:
    cache, url = cached_server
    params = {"layers": 2, "seed": 7, "steps": STEPS, "prompt": "a red box"}
    with Client(url, f"cache-{cache}") as client:
        first = client.run("decompose", params, [image_input(picture())])
        second = client.run("decompose", params, [image_input(picture())])
    assert layer_bytes(first) == layer_bytes(second) and len(first.layers) == 2
    timings = first.done["timings"]
    # true CFG: two forwards per step; the cache reused some of them
    assert timings["forwards_computed"] + timings["forwards_skipped"] == 2 * STEPS
    assert timings["forwards_skipped"] > 0 and timings["forwards_computed"] >= 2
    again = second.done["timings"]
    assert (again["forwards_computed"], again["forwards_skipped"]) == (
        timings["forwards_computed"], timings["forwards_skipped"])


def test_every_op_runs_with_the_cache(cached_server) -> None:
    cache, url = cached_server
    if cache != "dbcache":
        pytest.skip("every op once is enough: dbcache")
    base = {"seed": 3, "steps": STEPS, "prompt": "a red box"}
    layer = picture(24, 16)
    with Client(url, "cache-ops") as client:
        split = client.run("split", {**base, "layers": 2},
                           [image_input(layer, name="layer", x=4, y=2)])
        generate = client.run("generate", {**base, "layers": 1, "width": 64, "height": 64})
        regenerate = client.run("regenerate", base, [image_input(layer, name="layer")])
    assert len(split.layers) == 2 and len(generate.layers) == 1 and len(regenerate.layers) == 1
    for result in (split, generate, regenerate):
        assert result.done["timings"]["forwards_computed"] > 0


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler (apt install g++)")
@pytest.mark.timeout(900)
def test_compile_gives_the_same_bytes_twice() -> None:
    """`--compile` on CPU (inductor; about 1-3 minutes on 2 cores, most of it compiling):
    the compiled block runs and counts its forwards, the same bytes twice for a seed."""
    server, url = start("--compile", "--cache", "dbcache")
    try:
        params = {"layers": 1, "seed": 9, "steps": STEPS, "prompt": "a red box"}
        with Client(url, "compiled") as client:
            first = client.run("decompose", params, [image_input(picture())])
            second = client.run("decompose", params, [image_input(picture())])
        assert layer_bytes(first) == layer_bytes(second)
        timings = first.done["timings"]
        assert timings["forwards_computed"] + timings["forwards_skipped"] == 2 * STEPS
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(60) == 0
