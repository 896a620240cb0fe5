"""Shared fixtures: a real LayerBridge server on a loopback port, in a background thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from layerbridge.engines.base import Engine
from layerbridge.server import ServerConfig
from tests.helpers import RunningServer, start_server, stop_server


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
