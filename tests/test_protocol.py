"""The sans-I/O protocol against the shared test vectors and the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from layerbridge import protocol
from layerbridge.protocol import ClientConnection, InputSpec, Limits, ProtocolError

SHARED = Path(__file__).resolve().parents[1] / "shared"
VECTORS = json.loads((SHARED / "vectors.json").read_text())
SCHEMA = json.loads((SHARED / "protocol.schema.json").read_text())
EVENT_NAMES = {
    protocol.Hello: "hello",
    protocol.Submit: "submit",
    protocol.Cancel: "cancel",
    protocol.Fetch: "fetch",
}


def feed(conn: protocol.ServerConnection, frames: list[dict]) -> list:
    out = []
    for frame in frames:
        if "text" in frame:
            out += conn.receive_text(frame["text"])
        else:
            out += conn.receive_bytes(bytes(frame["bytes"]))
    return out


def outcome(item) -> str | dict:
    if isinstance(item, ProtocolError):
        return {"error": item.code}
    return EVENT_NAMES[type(item)]


@pytest.mark.parametrize("case", VECTORS["sequences"], ids=lambda c: c["name"])
def test_vector(case: dict) -> None:
    conn = protocol.ServerConnection(Limits(max_pixels=4096 * 4096))
    if case["greet"]:
        assert [outcome(e) for e in conn.receive_text(json.dumps(VECTORS["hello"]))] == ["hello"]
    assert [outcome(e) for e in feed(conn, case["frames"])] == case["expect"]


@pytest.mark.parametrize("case", VECTORS["sequences"], ids=lambda c: c["name"])
def test_schema_agrees_with_the_validator(case: dict) -> None:
    """Text frames the validator accepts validate against the schema, and most it refuses don't."""
    texts = [f["text"] for f in case["frames"] if "text" in f]
    for text, expected in zip(texts, case["expect"], strict=False):
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            continue
        valid = jsonschema.Draft202012Validator(SCHEMA).is_valid(message)
        if isinstance(expected, str):
            assert valid, text
        elif expected["error"] in {"bad_params", "unknown_op", "bad_input", "unknown_type"}:
            assert not valid, text


@pytest.mark.parametrize("message", VECTORS["server_messages"], ids=lambda m: m["type"])
def test_server_messages_validate(message: dict) -> None:
    jsonschema.validate(message, SCHEMA)


def test_errors_name_the_fix() -> None:
    conn = protocol.ServerConnection(Limits(max_pixels=100))
    conn.receive_text(json.dumps(VECTORS["hello"]))
    [error] = conn.receive_text(
        json.dumps({"type": "submit", "job": "a", "op": "decompose",
                    "inputs": [{"name": "image", "width": 20, "height": 20}]})
    )
    assert error.code == "too_many_pixels" and "--max-pixels" in error.message
    assert error.job == "a"


def test_token_is_checked() -> None:
    conn = protocol.ServerConnection(Limits(), check_token=lambda t: t == "s3cret")
    [error] = conn.receive_text(json.dumps(VECTORS["hello"]))
    assert error.code == "unauthorized"
    [hello] = conn.receive_text(json.dumps({**VECTORS["hello"], "token": "s3cret"}))
    assert hello.client == "test/1" and conn.greeted


def test_params_get_defaults() -> None:
    params = protocol.validate_params("decompose", {}, Limits())
    assert params["layers"] == "auto" and params["seed"] is None and params["prompt"] == ""


def test_client_pairs_headers_with_pixels() -> None:
    client = ClientConnection()
    header = {"type": "layer", "job": "j", "index": 0, "count": 1, "name": "a",
              "x": 1, "y": 2, "width": 1, "height": 2, "sha256": "0" * 64}
    assert client.receive(protocol.encode(header)) == []
    [layer] = client.receive(b"\x01" * 8)
    assert layer["data"] == b"\x01" * 8 and layer["name"] == "a"
    with pytest.raises(ProtocolError) as info:
        client.receive(b"\x00")
    assert info.value.code == "unexpected_binary"


def test_submit_frames_round_trip() -> None:
    spec = InputSpec("image", 2, 1, 3, 4)
    frames = protocol.submit_frames("j", "decompose", {"layers": 2}, [(spec, bytes(8))])
    server = protocol.ServerConnection(Limits())
    server.receive_text(json.dumps(VECTORS["hello"]))
    assert server.receive_text(frames[0]) == []
    [submit] = server.receive_bytes(frames[1])
    assert submit.inputs == [(spec, bytes(8))] and submit.params["layers"] == 2
    with pytest.raises(ValueError):
        protocol.submit_frames("j", "decompose", {}, [(spec, bytes(7))])


@pytest.mark.parametrize("job", ["", "no spaces", "x" * 129, 7])
def test_hello_required_echoes_only_a_valid_job_id(job) -> None:
    conn = protocol.ServerConnection(Limits())
    [error] = conn.receive_text(json.dumps({"type": "submit", "job": job}))
    assert error.code == "hello_required" and error.job is None
    jsonschema.validate(error.to_message(), SCHEMA)
