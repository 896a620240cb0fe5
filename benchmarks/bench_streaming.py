"""Streaming overhead: layers delivered by the server vs the same bytes on a bare websocket.

The layers come from the classic engine, computed once before timing; the timed engine
then hands them over instantly, so the ratio measures only what the server adds
(queue, trimming, digests, framing, the per-job record) over sending the bytes.

    python benchmarks/bench_streaming.py [--layers 8] [--size 2048] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from websockets.asyncio.server import serve
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerbridge.client import Client  # noqa: E402
from layerbridge.engines.base import Engine, JobContext, JobRequest, Layer  # noqa: E402
from layerbridge.imaging import trim_to_alpha  # noqa: E402
from layerbridge.server import LayerBridgeServer, ServerConfig  # noqa: E402
from tests.helpers import image_input  # noqa: E402


class PrecomputedLayers(Engine):
    """Hands over layers made beforehand, so that timing sees the server alone."""

    name = "precomputed"
    ops = ("decompose",)

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        ctx.set_layer_count(len(self.layers))
        yield from self.layers


def make_layers(count: int, size: int) -> list[Layer]:
    """``count`` layers of ``size``x``size``: a photo-like background and soft blobs."""
    rng = np.random.default_rng(0)
    layers = [Layer("Background", rng.integers(0, 256, (size, size, 4), dtype=np.uint8))]
    layers[0].pixels[..., 3] = 255
    yy, xx = np.mgrid[:size, :size]
    for index in range(1, count):
        cx, cy, radius = rng.integers(size // 4, 3 * size // 4, 3)
        alpha = np.clip(radius - np.hypot(xx - cx, yy - cy), 0, 1)
        pixels = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
        pixels[..., 3] = (alpha * 255).astype(np.uint8)
        layers.append(Layer(f"Layer {index}", pixels))
    return layers


def in_background(coroutine_factory) -> tuple[asyncio.AbstractEventLoop, object]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop, asyncio.run_coroutine_threadsafe(coroutine_factory(), loop).result()


def time_server(layers: list[Layer], image: np.ndarray) -> float:
    server = LayerBridgeServer(PrecomputedLayers(layers), ServerConfig(port=0))
    loop, _ = in_background(server.start)
    with Client(server.url, "bench") as client:
        started = time.perf_counter()
        result = client.run("decompose", {}, [image_input(image)])
        elapsed = time.perf_counter() - started
    assert len(result.layers) == len(layers)
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
    return elapsed


def time_bare(payloads: list[bytes], image: np.ndarray) -> float:
    """The same exchange with no server logic: the image up, then the bytes down."""

    async def handler(ws) -> None:
        await ws.recv()
        for payload in payloads:
            await ws.send('{"type":"layer"}')
            await ws.send(payload)
        await ws.send('{"type":"done"}')

    async def start():
        return await serve(handler, "127.0.0.1", 0, max_size=None, compression=None)

    loop, server = in_background(start)
    port = server.sockets[0].getsockname()[1]
    with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as ws:
        started = time.perf_counter()
        ws.send(image.tobytes())
        while ws.recv() != '{"type":"done"}':
            pass
        elapsed = time.perf_counter() - started
    loop.call_soon_threadsafe(server.close)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    layers = make_layers(args.layers, args.size)
    image = layers[0].pixels
    payloads = [t.pixels.tobytes() for t in map(trim_to_alpha, layers) if t is not None]
    total_mb = sum(map(len, payloads)) / 1e6
    time_server(layers, image), time_bare(payloads, image)  # warm up both paths
    server, bare = [], []
    for _ in range(args.repeat):  # interleaved, so drift in the machine hits both alike
        server.append(time_server(layers, image))
        bare.append(time_bare(payloads, image))
    s, b = statistics.median(server), statistics.median(bare)
    print(f"{args.layers} layers of {args.size}x{args.size}, {total_mb:.0f} MB down")
    print(f"server {s:.3f} s   bare websocket {b:.3f} s   (median of {args.repeat})")
    print(f"streaming overhead ratio: {s / b:.2f}  (aim <= 1.2)")


if __name__ == "__main__":
    main()
