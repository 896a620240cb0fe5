"""Shared fixtures: a real LayerBridge server on a loopback port, in a background thread."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from layerbridge.client import Client
from layerbridge.engines.base import Engine
from layerbridge.protocol import InputSpec
from layerbridge.server import LayerBridgeServer, ServerConfig


@dataclass
class RunningServer:
    server: LayerBridgeServer
    loop: asyncio.AbstractEventLoop
    url: str

    def client(self, name: str = "test", **kwargs) -> Client:
        client = Client(self.url, name, **kwargs)
        client.connect()
        return client

    def call(self, coroutine) -> object:
        """Run a coroutine on the server's loop (to inspect or stop it) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)


def start_server(engine: Engine, config: ServerConfig) -> RunningServer:
    loop = asyncio.new_event_loop()
    server = LayerBridgeServer(engine, replace(config, port=0))
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="server")
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    return RunningServer(server, loop, server.url)


def stop_server(running: RunningServer) -> None:
    running.call(running.server.stop())
    running.loop.call_soon_threadsafe(running.loop.stop)


@pytest.fixture(scope="session")
def classic_engine() -> Engine:
    from layerbridge.engines.classic import ClassicEngine

    engine = ClassicEngine()
    engine.warm_up()
    return engine


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """Start servers for one test: ``serve(engine, **config)``; all stopped afterwards."""
    started: list[RunningServer] = []

    def start(engine: Engine, **config) -> RunningServer:
        running = start_server(engine, ServerConfig(**config))
        started.append(running)
        return running

    yield start
    for running in started:
        stop_server(running)


@pytest.fixture
def classic_server(serve, classic_engine, tmp_path) -> RunningServer:
    return serve(classic_engine, output_dir=tmp_path / "out")


def image_input(pixels: np.ndarray, name: str = "image", x: int = 0, y: int = 0):
    """One submit input from an (h, w, 4) uint8 array."""
    height, width = pixels.shape[:2]
    return (InputSpec(name, width, height, x, y), np.ascontiguousarray(pixels).tobytes())


def layer_pixels(message: dict) -> np.ndarray:
    return np.frombuffer(message["data"], np.uint8).reshape(message["height"], message["width"], 4)


def start_cli_server(output_dir: Path) -> tuple[subprocess.Popen, str]:
    """`layerbridge serve --port 0` as a user runs it; return the process and its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "layerbridge.cli", "serve", "--port", "0"]
        + ["--output-dir", str(output_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = server.stdout.readline()
    if "ws://127.0.0.1:" not in line:
        server.kill()
        raise AssertionError(f"the server did not start: {server.stderr.read()}")
    return server, line.split()[-1]
