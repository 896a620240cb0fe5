"""Every op of the diffusion engine through the real websocket server, with the tiny engine.

The server trims each layer to its alpha bounds and streams it; what arrives, placed back at
its offset, must be the bytes the engine made (run here directly with the same seed).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from layerbridge.engines.base import InputImage, JobContext, JobRequest, Layer
from layerbridge.engines.diffusion import DiffusionEngine
from tests.helpers import image_input, layer_pixels

STEPS = 2
PARAMS = {"prompt": "", "seed": None, "steps": None, "resolution": None,
          "negative_prompt": None, "guidance": None}


@pytest.fixture(scope="module")
def engine() -> DiffusionEngine:
    tiny = DiffusionEngine.tiny(steps=STEPS)
    tiny.warm_up()
    return tiny


@pytest.fixture
def server(serve, engine, tmp_path):
    return serve(engine, output_dir=tmp_path / "out")


def picture(width: int = 48, height: int = 32) -> np.ndarray:
    image = np.full((height, width, 4), 230, np.uint8)
    image[6:22, 8:30, :3] = (200, 20, 60)
    return image


def placed(messages: list[dict], width: int, height: int, x0: int = 0, y0: int = 0) -> list:
    """Each streamed layer back on a canvas of the source's size, as the engine made it."""
    canvases = []
    for message in messages:
        assert hashlib.sha256(message["data"]).hexdigest() == message["sha256"]
        canvas = np.zeros((height, width, 4), np.uint8)
        x, y = message["x"] - x0, message["y"] - y0
        canvas[y:y + message["height"], x:x + message["width"]] = layer_pixels(message)
        canvases.append(canvas)
    return canvases


def visible(layer: Layer) -> np.ndarray:
    """The engine's layer as a client sees it: fully transparent pixels carry no colour."""
    pixels = layer.pixels.copy()
    pixels[pixels[..., 3] == 0] = 0
    return pixels


def test_welcome_announces_the_diffusion_capabilities(server) -> None:
    with server.client() as client:
        welcome = client.welcome
    assert welcome["engine"] == "tiny"
    capabilities = welcome["capabilities"]
    assert set(capabilities["ops"]) == {"decompose", "generate", "regenerate", "split"}
    assert capabilities["resolutions"] == [640, 1024]


def test_decompose_streams_the_engines_layers_bottom_first(server, engine) -> None:
    image = picture()
    params = {"layers": 2, "seed": 21, "prompt": "a red box"}
    messages: list[dict] = []
    with server.client() as client:
        result = client.run("decompose", params, [image_input(image)], on_message=messages.append)
    direct = list(engine.run(JobRequest("direct", "decompose", {**PARAMS, **params},
                                        {"image": InputImage("image", image)}), JobContext()))
    assert [m["name"] for m in result.layers] == ["Background", "Layer 1"]
    assert [m["index"] for m in result.layers] == [0, 1]
    for sent, made in zip(placed(result.layers, 48, 32), direct, strict=True):
        assert np.array_equal(sent, visible(made))
    stages = [m["stage"] for m in messages if m["type"] == "progress"]
    assert {"encode", "denoise", "decode"} <= set(stages)
    fractions = [m["fraction"] for m in messages if m["type"] == "progress"]
    assert fractions == sorted(fractions)
    assert (result.done["width"], result.done["height"]) == (48, 32)


def test_split_returns_parts_at_the_layer_place(server) -> None:
    layer = picture(40, 30)
    layer[:, :5, 3] = 0
    with server.client() as client:
        result = client.run("split", {"layers": 2, "seed": 2, "prompt": "parts"},
                            [image_input(layer, "layer", 60, 12)])
    assert len(result.layers) == 2
    for message in result.layers:
        assert message["x"] >= 60 and message["x"] + message["width"] <= 100
        assert message["y"] >= 12 and message["y"] + message["height"] <= 42


def test_generate_previews_then_streams_layers(server) -> None:
    with server.client() as client:
        result = client.run("generate", {"prompt": "a lighthouse", "layers": 1, "seed": 4,
                                         "width": 96, "height": 64})
    assert result.preview is not None
    assert (result.preview["width"], result.preview["height"]) == (96, 64)
    assert len(result.layers) == 1
    assert (result.done["width"], result.done["height"]) == (96, 64)


def test_regenerate_replaces_one_layer_in_place(server, engine) -> None:
    """One layer back inside the source layer's box, the engine's bytes: its colour edited
    and its alpha cut again from the edit (a changed shape gets a new silhouette)."""
    document = picture(64, 48)
    layer = np.zeros((20, 24, 4), np.uint8)
    layer[2:18, 3:21] = (40, 160, 40, 255)
    inputs = [image_input(layer, "layer", 30, 10), image_input(document, "document")]
    params = {"prompt": "make it blue", "seed": 8, "resolution": 640}
    with server.client() as client:
        result = client.run("regenerate", params, inputs)
    (message,) = result.layers
    direct = list(engine.run(JobRequest("direct", "regenerate", {**PARAMS, **params}, {
        "layer": InputImage("layer", layer, 30, 10),
        "document": InputImage("document", document)}), JobContext()))
    (sent,) = placed(result.layers, 24, 20, 30, 10)
    assert np.array_equal(sent, visible(direct[0]))
    assert message["x"] >= 30 and message["x"] + message["width"] <= 54
    assert message["y"] >= 10 and message["y"] + message["height"] <= 30


def test_cancel_stops_a_running_job(server) -> None:
    with server.client() as client:
        job = client.submit("decompose", {"layers": 2, "steps": 100, "prompt": "x"},
                            [image_input(picture())])
        seen = []
        for message in client.events(job, timeout=120):
            seen.append(message)
            if message["type"] == "progress" and message.get("step") == 1:
                client.cancel(job)
    assert seen[-1]["type"] == "cancelled"
    steps = [m["step"] for m in seen if m["type"] == "progress" and "step" in m]
    assert max(steps) < 10  # stopped within a step or two of the cancel, not at step 100
