"""Helpers shared by the tests and benchmarks, in one place: the real server in a thread,
submit inputs, layers read back, engine wrappers that only change timing or inject faults,
and a bare websocket for clients that misbehave. Designs to decompose are in synthetic.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from psd_tools import PSDImage
from websockets.sync.client import connect

from layerbridge import budget, protocol
from layerbridge.client import Client
from layerbridge.engines.base import Engine, JobContext, JobRequest, Layer
from layerbridge.imaging import composite
from layerbridge.protocol import InputSpec
from layerbridge.server import LayerBridgeServer, ServerConfig

REPO = Path(__file__).resolve().parents[1]
# The GIMP plug-in's folder: the one that holds its host-free core.
PLUGIN_DIR = next((REPO / "gimp_plugin").glob("*/plugin_core.py")).parent


# --- the real server in a background thread --------------------------------------------


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


def image_input(pixels: np.ndarray, name: str = "image", x: int = 0, y: int = 0):
    """One submit input from an (h, w, 4) uint8 array."""
    height, width = pixels.shape[:2]
    return (InputSpec(name, width, height, x, y), np.ascontiguousarray(pixels).tobytes())


def layer_pixels(message: dict) -> np.ndarray:
    return np.frombuffer(message["data"], np.uint8).reshape(message["height"], message["width"], 4)


def start_cli_server(output_dir: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """`layerbridge serve --port 0 [options]` as a user runs it; return the process and its
    URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "layerbridge.cli", "serve", "--port", "0"]
        + ["--output-dir", str(output_dir), *options],
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


# --- the memory of a server process and its children -----------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the classic engine's fork server and workers)."""
    tree, at = [pid], 0
    while at < len(tree):
        try:
            children = Path(f"/proc/{tree[at]}/task/{tree[at]}/children").read_text().split()
        except OSError:  # it ended meanwhile
            children = []
        tree.extend(int(child) for child in children)
        at += 1
    return tree


def tree_memory(pid: int) -> tuple[int, int]:
    """(sum of PSS, sum of RSS) over the process tree, in bytes.

    PSS splits each page among the processes sharing it, so its sum is what the tree holds
    of the machine's memory; the sum of RSS counts a forked child's shared pages again.
    """
    pss = rss = 0
    for member in process_tree(pid):
        try:
            text = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
    return pss, rss


# --- layers read back -----------------------------------------------------------------


def as_layers(messages: list[dict]) -> list[Layer]:
    return [Layer(m["name"], layer_pixels(m), m["x"], m["y"]) for m in messages]


# --- engines wrapped: the real engine, held at a gate or with injected faults --------


class FaultyEngine(Engine):
    """The real classic engine with injected faults: ``faults[n]`` runs instead on the
    n-th call (1-based), every other call delegates. A test double for fault injection."""

    def __init__(self, inner: Engine, faults: dict[int, Callable[[JobContext], None]]) -> None:
        self.inner, self.faults = inner, faults
        self.name, self.ops = inner.name, inner.ops
        self.min_layers, self.max_layers = inner.min_layers, inner.max_layers
        self.calls = 0

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        self.calls += 1
        fault = self.faults.get(self.calls)
        if fault is not None:
            ctx.progress(0.1, "fault")
            fault(ctx)
        yield from self.inner.run(request, ctx)


def raise_bug(ctx: JobContext) -> None:
    raise ZeroDivisionError("injected bug in the engine")


class GatedEngine(Engine):
    """The real classic engine behind a gate: each job waits until ``gate`` is open.

    A test double only in when it starts; the layers are the classic engine's own. With
    ``working``, the memory budget reserves the inner engine's working memory for its jobs.
    """

    def __init__(self, inner: Engine, working: bool = False) -> None:
        self.inner, self.working = inner, working
        self.name, self.ops = inner.name, inner.ops
        self.min_layers, self.max_layers = inner.min_layers, inner.max_layers
        self.gate = threading.Event()

    def working_bytes(self, pixels: int) -> int:
        return budget.working_bytes(self.inner, pixels) if self.working else 0

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        while not self.gate.wait(0.02):
            ctx.check_cancelled()
        yield from self.inner.run(request, ctx)


def check_job_complete(result, image: np.ndarray) -> None:
    """Every layer once, indices 0..count-1, digests match, composites to the image."""
    layers = result.layers
    assert result.done is not None and result.done["layers"] == len(layers) >= 1
    assert [m["index"] for m in layers] == list(range(len(layers)))
    assert all(m["count"] == len(layers) for m in layers)
    for m in layers:
        assert hashlib.sha256(m["data"]).hexdigest() == m["sha256"]
        assert len(m["data"]) == m["width"] * m["height"] * 4
    from layerbridge.engines.base import Layer as L

    flat = composite(
        [L(m["name"], layer_pixels(m), m["x"], m["y"]) for m in layers],
        image.shape[1],
        image.shape[0],
    )
    assert np.abs(flat.astype(int) - image).max() <= 1


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


# --- raw websocket: a client that can stop reading or vanish without a close ----------


def raw_connect(url: str, rcvbuf: int | None = None, source: str | None = None) -> socket.socket:
    """A websocket handshake on a bare socket (optionally with a tiny receive buffer, from
    another loopback address)."""
    parsed = urlparse(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source:
        sock.bind((source, 0))
    sock.connect((parsed.hostname, parsed.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def raw_send(sock: socket.socket, payload: str | bytes) -> None:
    """One masked client frame: text for str, binary for bytes."""
    opcode = 0x1 if isinstance(payload, str) else 0x2
    data = payload.encode() if isinstance(payload, str) else payload
    header = bytes([0x80 | opcode])
    if len(data) < 126:
        header += bytes([0x80 | len(data)])
    elif len(data) < 1 << 16:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(data))
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", len(data))
    mask = os.urandom(4)
    masked = np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), len(data))
    sock.sendall(header + mask + masked.tobytes())


def hello(name: str) -> str:
    return json.dumps({"type": "hello", "protocol": 1, "client": name})


def submit(job: str, image: np.ndarray) -> list:
    spec = {"name": "image", "width": image.shape[1], "height": image.shape[0]}
    message = {"type": "submit", "job": job, "op": "decompose", "params": {}, "inputs": [spec]}
    return [json.dumps(message), np.ascontiguousarray(image).tobytes()]


# --- clients and files read back, shared by the hardening and CLI tests -----------------


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", exactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", exactly(8))[0]
    return first & 0x0F, exactly(length)


def read_psd_layers(path: Path) -> tuple[PSDImage, list]:
    psd = PSDImage.open(path)
    return psd, [layer for layer in psd.descendants() if not layer.is_group()]


FINAL = ("done", "error", "cancelled")


class Peer:
    """A raw websocket client from a chosen loopback address; keeps every message."""

    def __init__(
        self,
        url: str,
        name: str = "peer",
        source: str = "127.0.0.1",
        hello: dict[str, Any] | None = None,
    ) -> None:
        # Entered by hand, as the library's client does: the connection outlives a block.
        self.ws = connect(
            url, source_address=(source, 0), max_size=None, open_timeout=10
        ).__enter__()
        self.reader = protocol.ClientConnection()
        self.inbox: list[dict[str, Any]] = []
        self.send_json({"type": "hello", "protocol": 1, "client": name, **(hello or {})})
        self.welcome = self.next()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.ws.close()

    @property
    def secret(self) -> str:
        return self.welcome["secret"]

    def send_json(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def submit(
        self,
        job: str,
        image: np.ndarray,
        params: dict[str, Any] | None = None,
        op: str = "decompose",
        name: str = "image",
        x: int = 0,
        y: int = 0,
    ) -> None:
        height, width = image.shape[:2]
        spec = {"name": name, "width": width, "height": height, "x": x, "y": y}
        self.send_json(
            {"type": "submit", "job": job, "op": op, "params": params or {}, "inputs": [spec]}
        )
        self.ws.send(np.ascontiguousarray(image).tobytes())

    def next(self, timeout: float = 30) -> dict[str, Any]:
        """The next complete message (a layer with its pixels under "data")."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.reader.receive(self.ws.recv(max(0.01, deadline - time.monotonic())))
            if messages:
                assert len(messages) == 1
                return messages[0]

    def until_final(self, job: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The job's messages up to its outcome; other messages are kept in ``inbox``."""
        deadline = time.monotonic() + timeout
        mine: list[dict[str, Any]] = []
        for message in self.inbox:
            if message.get("job") == job:
                mine.append(message)
        self.inbox = [m for m in self.inbox if m.get("job") != job]
        while not (mine and mine[-1]["type"] in FINAL):
            message = self.next(max(0.01, deadline - time.monotonic()))
            (mine if message.get("job") == job else self.inbox).append(message)
        return mine

    def first_for(self, job: str, timeout: float = 30) -> dict[str, Any]:
        """The first message about ``job`` (others stay in ``inbox``)."""
        for message in self.inbox:
            if message.get("job") == job:
                self.inbox.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message.get("job") == job:
                return message
            self.inbox.append(message)

    def drain(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        got: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                got.append(self.next(max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                break
        return got


class Result:
    """A job's messages as check_job_complete wants them."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.layers = [m for m in messages if m["type"] == "layer"]
        self.done = messages[-1] if messages[-1]["type"] == "done" else None


def outcome(messages: list[dict[str, Any]]) -> str:
    last = messages[-1]
    return last["code"] if last["type"] == "error" else last["type"]


# --- clients that stop reading ------------------------------------------------------


def big_design(seed: int) -> np.ndarray:
    """A 640x480 design: each layer frame is up to 1.2 MB."""
    image = np.zeros((480, 640, 4), np.uint8)
    rng = np.random.default_rng(seed)
    image[...] = (*rng.integers(150, 255, 3), 255)
    image[40:300, 60:400, :3] = rng.integers(0, 120, 3)
    image[200:460, 300:620, :3] = rng.integers(0, 120, 3)
    return image


#: Fetches per stalled connection: past the server's limit of jobs a connection receives.
FETCHES = 40


def stall(url: str, tag: str) -> tuple[list[str], list[socket.socket]]:
    """Open two websocket connections on bare sockets with tiny buffers that are never
    read (a websockets client in this process would buffer what it does not recv(), and
    count in this process's memory); each submits two big jobs and fetches its first one
    FETCHES times. Return the job ids and the open sockets."""
    socks = [raw_connect(url, rcvbuf=4096) for _ in range(2)]
    for n, sock in enumerate(socks):
        raw_send(sock, hello(f"deaf-{tag}-{n}"))
    jobs = []
    for k in range(2):
        for n, sock in enumerate(socks):
            jobs.append(f"deaf{tag}{n}{k}")
            for frame in submit(jobs[-1], big_design(10 * n + k)):
                raw_send(sock, frame)
    for sock, job in zip(socks, jobs[:2], strict=True):
        for _ in range(FETCHES):  # each fetch is one more reader of the same recorded frames
            raw_send(sock, json.dumps({"type": "fetch", "job": job}))
    return jobs, socks
