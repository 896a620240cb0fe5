"""The real server on a loopback port, driven by real websocket clients, classic engine."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from psd_tools import PSDImage
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from layerbridge import protocol
from layerbridge.client import Client, ProtocolMismatch, ServerError, ServerUnavailable
from layerbridge.imaging import composite
from tests.helpers import as_layers, image_input, layer_pixels
from tests.synthetic import flat_design as design

SCHEMA = json.loads((Path(__file__).parents[1] / "shared" / "protocol.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def slow_image(seed: int = 1) -> np.ndarray:
    """A big noisy photo-like image: the classic engine takes a while on it."""
    rng = np.random.default_rng(seed)
    base = design(1600, 1200, seed).astype(np.int16)
    noise = rng.integers(-40, 40, base.shape, dtype=np.int16)
    noise[..., 3] = 0
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def check_messages(messages: list[dict]) -> None:
    for message in messages:
        VALIDATOR.validate({k: v for k, v in message.items() if k != "data"})


def test_welcome_announces_the_engine(classic_server) -> None:
    with classic_server.client() as client:
        welcome = client.welcome
    check_messages([welcome])
    assert welcome["engine"] == "classic"
    assert set(welcome["capabilities"]["ops"]) == {"decompose", "split"}
    assert welcome["capabilities"]["max_pixels"] == protocol.Limits().max_pixels


def test_decompose_streams_layers_that_composite_to_the_image(classic_server) -> None:
    image = design()
    messages: list[dict] = []
    with classic_server.client() as client:
        result = client.run(
            "decompose", {"layers": "auto"}, [image_input(image)], on_message=messages.append
        )
    check_messages(messages)
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "queued" and kinds[-1] == "done" and "progress" in kinds
    fractions = [m["fraction"] for m in messages if m["type"] == "progress"]
    assert fractions == sorted(fractions)
    assert len(result.layers) >= 2 and result.done["layers"] == len(result.layers)
    assert [m["index"] for m in result.layers] == list(range(len(result.layers)))
    assert all(m["count"] == len(result.layers) for m in result.layers)
    for message in result.layers:
        assert hashlib.sha256(message["data"]).hexdigest() == message["sha256"]
    flat = composite(as_layers(result.layers), 160, 120)
    assert np.abs(flat.astype(int) - image).max() <= 1
    assert (result.done["width"], result.done["height"]) == (160, 120)


def test_split_returns_sub_layers_at_the_layer_place(classic_server) -> None:
    layer = design(90, 70, seed=3)
    layer[:5] = 0  # a transparent band, as layers have
    x, y = 40, 25
    with classic_server.client() as client:
        result = client.run("split", {"layers": 2}, [image_input(layer, "layer", x, y)])
    assert len(result.layers) == 2
    flat = composite(as_layers(result.layers), x + 90, y + 70)[y:, x:]
    assert np.abs(flat.astype(int) - layer).max() <= 1
    assert min(m["x"] for m in result.layers) >= x and min(m["y"] for m in result.layers) >= y


@pytest.mark.parametrize("op, inputs", [("generate", []), ("regenerate", ["layer"])])
def test_prompt_ops_name_what_to_install(classic_server, op, inputs) -> None:
    pixels = design(8, 8)
    with classic_server.client() as client, pytest.raises(ServerError) as info:
        client.run(op, {"prompt": "a red fox"}, [image_input(pixels, n) for n in inputs])
    assert info.value.code == "unsupported_op"
    assert "qwen" in info.value.message and "classic" in info.value.message


def test_saved_psd_and_ora_read_back(classic_server) -> None:
    image = design(120, 90, seed=5)
    with classic_server.client() as client:
        result = client.run("decompose", {"save": "poster.psd"}, [image_input(image)])
        ora = client.run("decompose", {"save": "poster.ora"}, [image_input(image)])
    psd = PSDImage.open(result.done["saved"])
    assert (psd.width, psd.height) == (120, 90)
    psd_layers = [layer for layer in psd.descendants() if not layer.is_group()]
    assert [layer.name for layer in psd_layers] == [m["name"] for m in result.layers]
    for psd_layer, sent in zip(psd_layers, result.layers, strict=True):
        assert (psd_layer.left, psd_layer.top) == (sent["x"], sent["y"])
        assert np.array_equal(np.asarray(psd_layer.topil().convert("RGBA")), layer_pixels(sent))
    assert Path(ora.done["saved"]).stat().st_size > 0


def test_disconnect_mid_job_then_fetch_returns_everything(classic_server) -> None:
    image = slow_image()
    client = classic_server.client("first")
    job = client.submit("decompose", {}, [image_input(image)])
    next(m for m in client.events(job) if m["type"] == "progress")
    client.close()  # the job goes on
    with classic_server.client("again", secret=client.secret) as again:  # the same client
        again.fetch(job)
        result = again.wait(job, timeout=120)
    assert result.done is not None and len(result.layers) == result.done["layers"] >= 1
    flat = composite(as_layers(result.layers), image.shape[1], image.shape[0])
    assert np.abs(flat.astype(int) - image).max() <= 1


def test_cancel_running_and_queued_jobs_then_the_next_runs(classic_server) -> None:
    with classic_server.client() as client:
        running = client.submit("decompose", {}, [image_input(slow_image())])
        queued = client.submit("decompose", {}, [image_input(slow_image(2))])
        next(m for m in client.events(running) if m["type"] == "progress")
        client.cancel(queued)
        client.cancel(running)
        started = time.monotonic()
        assert client.wait(running, timeout=60).cancelled
        assert time.monotonic() - started < 30
        assert client.wait(queued, timeout=60).cancelled
        after = client.run("decompose", {}, [image_input(design())], timeout=60)
    assert after.done is not None


def test_two_clients_at_once(classic_server) -> None:
    first, second = classic_server.client("a"), classic_server.client("b")
    jobs = [
        (first, first.submit("decompose", {}, [image_input(design(seed=1))])),
        (second, second.submit("decompose", {}, [image_input(design(seed=2))])),
    ]
    for client, job in jobs:
        assert client.wait(job, timeout=60).done is not None
        client.close()


def test_unknown_and_duplicate_jobs(classic_server) -> None:
    with classic_server.client() as client:
        client.fetch("nothing-here")
        message = client.receive(timeout=10)
        assert message["code"] == "unknown_job" and "kept" in message["message"]
        job = client.submit("decompose", {}, [image_input(design())])
        client.submit("decompose", {}, [image_input(design())], job=job)
        messages = list(client.events(job))
    assert any(m["type"] == "error" and m["code"] == "duplicate_job" for m in messages)


def raw_exchange(
    url: str, frames: list, answers: int = 1, hello: bool = True, **connect_args
) -> list[dict]:
    """Send raw frames on a bare websocket; return the welcome (with ``hello``) and the
    next ``answers`` JSON replies. Generous timeouts: a busy server may answer slowly."""
    replies = []
    with connect(url, **connect_args) as ws:
        if hello:
            ws.send(json.dumps({"type": "hello", "protocol": 1, "client": "raw"}))
            replies.append(json.loads(ws.recv(30)))
        for frame in frames:
            ws.send(frame)
        replies += [json.loads(ws.recv(30)) for _ in range(answers)]
    return replies


def submit_text(**fields) -> str:
    message = {
        "type": "submit",
        "job": "bad",
        "op": "decompose",
        "params": {},
        "inputs": [{"name": "image", "width": 2, "height": 2}],
    }
    return json.dumps({**message, **fields})


BAD_INPUTS = {
    "malformed JSON": (["{not json"], "bad_json"),
    "unknown op": ([submit_text(op="paint")], "unknown_op"),
    "wrong byte count": ([submit_text(), b"\0" * 15], "wrong_byte_count"),
    "too many pixels": (
        [submit_text(inputs=[{"name": "image", "width": 60000, "height": 60000}])],
        "too_many_pixels",
    ),
    "unexpected binary": ([b"\0" * 16], "unexpected_binary"),
    "too many layers": ([submit_text(params={"layers": 99})], "too_many_layers"),
}


def test_bad_inputs_get_errors_while_another_job_completes(classic_server) -> None:
    url = classic_server.url
    with classic_server.client("busy") as busy:
        job = busy.submit("decompose", {}, [image_input(slow_image(3))])
        for name, (frames, code) in BAD_INPUTS.items():
            replies = raw_exchange(url, frames)
            assert [r.get("code") for r in replies[1:]] == [code], name
        assert raw_exchange(url, [submit_text()], hello=False)[0]["code"] == "hello_required"
        wrong = json.dumps({"type": "hello", "protocol": 99, "client": "old"})
        assert raw_exchange(url, [wrong], hello=False)[0]["code"] == "protocol_mismatch"
        with pytest.raises(InvalidStatus) as refused:
            raw_exchange(url, [], 0, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        result = busy.wait(job, timeout=120)
    assert result.done is not None


def test_oversized_frame_closes_with_1009_and_others_go_on(serve, classic_engine) -> None:
    running = serve(classic_engine, limits=protocol.Limits(max_pixels=64 * 64))
    with connect(running.url) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "client": "big"}))
        ws.recv(10)
        ws.send(b"\0" * (64 * 64 * 4 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(10)
    assert closed.value.rcvd.code == 1009
    with running.client() as client:
        assert client.run("decompose", {}, [image_input(design(40, 30))]).done is not None


def test_origin_allow_list(serve, classic_engine) -> None:
    running = serve(classic_engine, allowed_origins=["uxp://layerbridge"])
    assert raw_exchange(running.url, [], 0, origin="uxp://layerbridge")[0]["type"] == "welcome"
    with pytest.raises(InvalidStatus):
        raw_exchange(running.url, [], 0, origin="http://localhost:8000")


def test_token_is_required_off_loopback_and_checked(serve, classic_engine) -> None:
    from layerbridge.server import ServerConfig

    with pytest.raises(ValueError, match="--token"):
        ServerConfig(host="0.0.0.0").check()
    running = serve(classic_engine, token="s3cret")
    with pytest.raises(ServerError) as info:
        Client(running.url, "intruder", token="guess").connect()
    assert info.value.code == "unauthorized"
    with Client(running.url, "friend", token="s3cret") as client:
        assert client.welcome["engine"] == "classic"


def test_client_errors_are_clear(classic_server) -> None:
    with pytest.raises(ServerUnavailable, match="layerbridge serve"):
        Client("ws://127.0.0.1:9", "nobody").connect()
    with connect(classic_server.url) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 2, "client": "x"}))
        assert json.loads(ws.recv(10))["code"] == "protocol_mismatch"
    client = Client(classic_server.url, "old")
    client._send = lambda frame, send=client._send: send(
        frame.replace('"protocol":1', '"protocol":0') if isinstance(frame, str) else frame
    )
    with pytest.raises(ProtocolMismatch, match="same release"):
        client.connect()
