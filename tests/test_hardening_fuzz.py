"""Hostile input: fuzzed frames against the sans-I/O core and the real server.

The sans-I/O half drives :class:`protocol.ServerConnection` directly (with the real
server's token check) and asserts it never raises and only answers with known error
codes. The real-server half sends hundreds of fuzzed frames over real websocket
connections; after every batch a fresh client still gets a decompose done, and the
server's memory comes back to where it started.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from layerbridge import protocol
from layerbridge.server import LayerBridgeServer, ServerConfig
from tests.helpers import image_input

SCHEMA = json.loads((Path(__file__).parents[1] / "shared" / "protocol.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ERROR_CODES = {
    value for name, value in vars(protocol).items() if name.isupper() and isinstance(value, str)
} - {"decompose", "generate", "regenerate", "split"}
EVENTS = (protocol.Hello, protocol.Submit, protocol.Cancel, protocol.Fetch)
TOKEN = "fuzz-token-\u00e9"
SMALL = protocol.Limits(max_pixels=64 * 64)  # frames over 16 KiB close with 1009
FIGURES: dict[str, float] = {}


def rss_bytes() -> int:
    """This process's resident memory: the test server runs in a thread of it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# --- strategies -----------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**40, 2**63, -(2**63), 1 << 16, (1 << 16) + 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["auto", "decompose", "split", "image", "layer", "x.psd", "../x.psd"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
job_ids = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_.:-]{1,20}\Z"),
    st.text(max_size=20),
    st.sampled_from(["", "x" * 129, "a b", "\ud800", "j\n", "j\x00", None, 7, [], {}]),
    json_values,
)
input_specs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["image", "layer", "document", "mask", "bogus"]) | json_values,
        "width": st.sampled_from([0, -1, 1, 2, 8, 60000, 2**40, 1.5, "8", None]) | json_values,
        "height": st.sampled_from([0, -1, 1, 2, 8, 60000, 2**40, 1.5, "8", None]) | json_values,
    },
    optional={"x": json_values, "y": json_values},
)
params = st.dictionaries(
    st.sampled_from(sorted(protocol.PARAMS)) | st.text(max_size=8), json_values, max_size=4
)


def message(kind: str) -> st.SearchStrategy[dict]:
    if kind == "hello":
        return st.fixed_dictionaries(
            {"type": st.just("hello")},
            optional={
                "protocol": st.sampled_from([1, 0, 2, 1.0, True, "1"]) | json_values,
                "client": st.sampled_from(["fuzz/1", "", "x" * 201, "\ud800"]) | json_values,
                "token": st.sampled_from([TOKEN, TOKEN[:-1], TOKEN + "x", "\udcff"]) | json_values,
            },
        )
    if kind == "submit":
        return st.fixed_dictionaries(
            {"type": st.just("submit")},
            optional={
                "job": job_ids,
                "op": st.sampled_from([*protocol.OPS, "paint", None]) | json_values,
                "params": params | json_values,
                "inputs": st.lists(input_specs, max_size=3) | json_values,
            },
        )
    return st.fixed_dictionaries({"type": st.just(kind)}, optional={"job": job_ids})


messages = st.sampled_from(["hello", "submit", "cancel", "fetch"]).flatmap(message) | (
    st.dictionaries(st.text(max_size=8), json_values, max_size=5)
)
LITERALS = [
    "",
    "null",
    "[]",
    '"hello"',
    "{",
    '{"type":"hello","protocol":NaN,"client":"x"}',
    '{"type":"hello","protocol":Infinity,"client":"x"}',
    '{"type":"submit","job":"j","op":"decompose","params":{"guidance":NaN},"inputs":[]}',
    '{"type":"submit","job":"j","op":"decompose","params":{"seed":-Infinity}}',
    '{"type":"hello","type":"submit","protocol":1,"client":"dup"}',
    '{"type":"fetch","job":"a","job":"b"}',
    '{"type":"submit","job":"j","op":"decompose","inputs":[{"name":"image",'
    '"width":1e999,"height":1e999}]}',
    '{"type":"submit","job":"j","op":"decompose","inputs":[{"name":"image",'
    '"width":' + "9" * 5000 + ',"height":1}]}',
    "[" * 100_000 + "]" * 100_000,
    '{"type":' * 50_000,
    '{"type":"hello","client":"' + "\u2603" * 30_000 + '"}',
    "x" * (protocol.MAX_TEXT_BYTES + 1),
    '{"type":"submit","job":"\\ud800","op":"decompose"}',
    '{"type":"cancel","job":"\\udfff\\u0000"}',
    "\x00\x01\x02",
    "\ufeff{}",
]
text_frames = st.one_of(
    messages.map(lambda m: json.dumps(m)),
    st.sampled_from(LITERALS),
    st.text(max_size=200),
)
binary_frames = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"\0" * 16, b"\0" * 15, b"\0" * 17, b"\xff" * 256]),
)
valid_submit = st.builds(
    lambda w, h, job: [
        json.dumps(
            {
                "type": "submit",
                "job": job,
                "op": "decompose",
                "params": {},
                "inputs": [{"name": "image", "width": w, "height": h}],
            }
        ),
        bytes(w * h * 4),
    ],
    st.integers(1, 8),
    st.integers(1, 8),
    st.from_regex(r"\Afz[a-z0-9]{1,12}\Z"),
)
hello_frame = json.dumps({"type": "hello", "protocol": 1, "client": "fuzz/1", "token": TOKEN})
WRONG_TOKEN_HELLO = json.dumps({"type": "hello", "protocol": 1, "client": "fuzz/1", "token": "x"})
frame_sequences = st.lists(
    st.one_of(
        text_frames.map(lambda t: [t]),
        binary_frames.map(lambda b: [b]),
        valid_submit,
        # a valid submit cut short, or with its pixels in the wrong order
        valid_submit.map(lambda f: f[:1]),
        valid_submit.map(lambda f: f[::-1]),
        st.just([hello_frame]),
    ),
    max_size=12,
).map(lambda chunks: [frame for chunk in chunks for frame in chunk])


# --- sans I/O -------------------------------------------------------------------------


def server_token_check() -> LayerBridgeServer:
    """A server object (never started) whose token check the fuzzed connection uses."""
    return LayerBridgeServer(engine=None, config=ServerConfig(token=TOKEN))  # type: ignore[arg-type]


def check_items(items: list) -> None:
    for item in items:
        if isinstance(item, protocol.ProtocolError):
            assert item.code in ERROR_CODES, item.code
            # every error must be sendable as a UTF-8 text frame
            protocol.encode(item.to_message())
        else:
            assert isinstance(item, EVENTS), item


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frame_sequences)
def test_sans_io_connection_never_raises_and_recovers(frames: list) -> None:
    server = server_token_check()
    conn = protocol.ServerConnection(SMALL, server.tokens.check)
    for frame in frames:
        if isinstance(frame, str):
            check_items(conn.receive_text(frame))
        else:
            check_items(conn.receive_bytes(frame))
    # Whatever came before, a hello (or, once greeted, its refusal as a second hello)
    # and a valid submit still work on this connection.
    greeted = conn.greeted
    items = conn.receive_text(hello_frame)
    if greeted:
        assert isinstance(items[-1], protocol.ProtocolError) and items[-1].code == "bad_message"
    else:
        assert isinstance(items[-1], protocol.Hello), items
    after = {
        "type": "submit",
        "job": "after",
        "op": "decompose",
        "params": {},
        "inputs": [{"name": "image", "width": 2, "height": 1}],
    }
    assert conn.receive_text(json.dumps(after)) == []
    [submit] = conn.receive_bytes(bytes(8))
    assert isinstance(submit, protocol.Submit) and submit.job == "after"
    FIGURES["sans_io_frames"] = FIGURES.get("sans_io_frames", 0) + len(frames) + 3


@pytest.mark.parametrize(
    ("width", "height", "code"),
    [
        (60000, 60000, "too_many_pixels"),
        (1 << 16, 1 << 16, "too_many_pixels"),
        (0, 10, "bad_input"),
        (-5, 10, "bad_input"),
        (2**40, 1, "bad_input"),
        (10, 2**40, "bad_input"),
        (1.0, 10, "bad_input"),
        (True, 10, "bad_input"),
    ],
)
def test_absurd_input_sizes_are_refused_before_any_pixels(width, height, code) -> None:
    conn = protocol.ServerConnection(protocol.Limits())
    conn.receive_text(hello_frame)
    submit = {
        "type": "submit",
        "job": "bomb",
        "op": "decompose",
        "inputs": [{"name": "image", "width": width, "height": height}],
    }
    before = rss_bytes()
    [error] = conn.receive_text(json.dumps(submit))
    assert error.job == "bomb"
    assert error.code == code
    # the refused submit waits for no pixels: its frame is dropped, with no second error
    assert conn.receive_bytes(b"\0" * 16) == []
    assert rss_bytes() - before < 16 << 20  # nothing like 60000*60000*4 was allocated


ESCAPES = [
    "../x.psd",
    "/etc/x.psd",
    "..\\x.psd",
    "x\x00.psd",
    "a/../../x.psd",
    ".x.psd",
    "sub/x.psd",
    "C:\\x.psd",
    "x.psd/",
    "x.exe",
    "~/x.psd",
    "x" * 200 + ".psd",
]


@pytest.mark.parametrize("name", ESCAPES)
def test_save_names_that_leave_the_output_folder_are_refused(name: str) -> None:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.validate_params("decompose", {"save": name}, protocol.Limits())
    assert refused.value.code == "bad_params"


# --- the real server ------------------------------------------------------------------


def exchange(url: str, frames: list, sentinel: str) -> list[dict]:
    """Send frames on a fresh connection, then a fetch of ``sentinel``; return every
    reply up to the sentinel's error, or up to a 1009 close after an oversized frame, or
    a 1008 close after an unauthorized hello."""
    replies: list[dict] = []
    oversized = any(len(f) > SMALL.max_frame_bytes for f in frames)
    with connect(url, max_size=None, compression=None) as ws:
        try:
            for frame in frames:
                ws.send(frame)
            ws.send(json.dumps({"type": "fetch", "job": sentinel}))
            while True:
                reply = ws.recv(30)
                if isinstance(reply, bytes):
                    continue  # a fuzzed job's layer pixels
                message = json.loads(reply)
                replies.append(message)
                if message.get("job") == sentinel and message["type"] == "error":
                    return replies
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            refused = any(r.get("code") == "unauthorized" for r in replies)
            # The two ways a server may end a fuzzed connection: 1009 after an oversized
            # frame, and 1008 after a hello with a wrong token, answered "unauthorized".
            assert (oversized and code == 1009) or (refused and code == 1008), (code, replies)
            return replies


def check_replies(replies: list[dict]) -> None:
    for reply in replies:
        VALIDATOR.validate(reply)
        if reply["type"] == "error":
            assert reply["code"] in ERROR_CODES


def fresh_decompose(url: str) -> None:
    from layerbridge.client import Client

    image = np.zeros((12, 16, 4), np.uint8)
    image[..., 3] = 255
    image[3:9, 4:12, :3] = (200, 40, 40)
    with Client(url, "after-fuzz", token=TOKEN) as client:
        result = client.run("decompose", {}, [image_input(image)], timeout=30)
    assert result.done is not None and result.done["layers"] == len(result.layers) >= 1


def test_real_server_survives_fuzzed_frames_and_memory_returns(serve, classic_engine) -> None:
    running = serve(
        classic_engine,
        token=TOKEN,
        limits=SMALL,
        max_jobs_per_client=64,
        failed_token_delay_s=0.001,  # fuzzed hellos guess tokens; the delay has its own test
    )
    fresh_decompose(running.url)  # warm every code path once before the baseline
    sent = {"frames": 0, "batches": 0}
    baseline = rss_bytes()
    peak = baseline

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames=frame_sequences, greet=st.booleans())
    # A wrong token ends the connection with 1008: always tried, not only when drawn.
    @example(frames=[WRONG_TOKEN_HELLO], greet=False)
    def batch(frames: list, greet: bool) -> None:
        nonlocal peak
        frames = [hello_frame, *frames] if greet else frames
        sentinel = f"sentinel{sent['batches']}"
        check_replies(exchange(running.url, frames, sentinel))
        sent["frames"] += len(frames) + 1
        sent["batches"] += 1
        fresh_decompose(running.url)
        peak = max(peak, rss_bytes())

    batch()
    # every literal once too, each on its own connection
    for i, literal in enumerate(LITERALS):
        check_replies(exchange(running.url, [hello_frame, literal], f"lit{i}"))
        sent["frames"] += 3
    fresh_decompose(running.url)
    time.sleep(0.5)
    after = rss_bytes()
    FIGURES.update(
        real_frames=sent["frames"],
        batches=sent["batches"],
        rss_baseline=baseline,
        rss_peak=peak,
        rss_after=after,
    )
    print(f"\nfuzz figures: {FIGURES}")
    assert sent["frames"] >= 200
    assert after - baseline < 64 << 20, (baseline, after)


def test_a_lone_surrogate_echoed_back_does_not_drop_the_connection(classic_server) -> None:
    """``hello_required`` echoes the job id; a ``\\ud800`` escape must still encode."""
    with connect(classic_server.url) as ws:
        ws.send('{"type":"submit","job":"\\ud800","op":"decompose"}')
        assert json.loads(ws.recv(10))["code"] == "hello_required"
        ws.send(json.dumps({"type": "hello", "protocol": 1, "client": "after"}))
        assert json.loads(ws.recv(10))["type"] == "welcome"


def test_a_lone_surrogate_token_is_unauthorized_not_a_crash(serve, classic_engine) -> None:
    running = serve(classic_engine, token=TOKEN)
    with connect(running.url) as ws:
        ws.send('{"type":"hello","protocol":1,"client":"x","token":"\\udcff"}')
        assert json.loads(ws.recv(10))["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(10)
    assert closed.value.rcvd.code == 1008


@pytest.mark.parametrize("field", ["job", "save"])
def test_a_trailing_newline_is_refused_in_job_ids_and_save_names(field: str) -> None:
    conn = protocol.ServerConnection(protocol.Limits())
    conn.receive_text(hello_frame)
    message = {"type": "submit", "job": "j", "op": "decompose", "params": {}, "inputs": []}
    if field == "job":
        message["job"] = "j\n"
    else:
        message["params"] = {"save": "x.psd\n"}
    [error] = conn.receive_text(json.dumps(message))
    assert isinstance(error, protocol.ProtocolError)
    assert error.code == ("bad_message" if field == "job" else "bad_params")


def test_errors_quote_a_clients_long_values_short(classic_server) -> None:
    """An error names the client's bad value, but a 50 KB value is not sent back whole
    (nor written to the log): it is shown cut, with its length."""
    long = "x" * 50_000
    image = [{"name": "image", "width": 2, "height": 2}]

    def submit(job: str, op: str = "decompose", params: dict | None = None,
               inputs: list | None = None) -> dict:
        return {"type": "submit", "job": job, "op": op, "params": params or {},
                "inputs": image if inputs is None else inputs}

    frames = [
        submit("a", params={"prompt": long}),
        submit("b", params={long: 1}),
        submit("c", op=long),
        submit("d", params={"save": long}),
        submit("e", inputs=[{"name": long, "width": 2, "height": 2}]),
        {"type": long},
    ]
    with connect(classic_server.url) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "client": "long-values"}))
        assert json.loads(ws.recv(10))["type"] == "welcome"
        for frame in frames:
            ws.send(json.dumps(frame))
            error = json.loads(ws.recv(10))
            assert error["type"] == "error", error
            assert error["code"] in {"bad_params", "unknown_op", "bad_input", "unknown_type"}, error
            assert len(error["message"]) < 400, (error["code"], len(error["message"]))
            assert "50000 characters" in error["message"], error["message"][:200]
    with connect(classic_server.url) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": long, "client": "long-version"}))
        error = json.loads(ws.recv(10))
        assert error["code"] == "protocol_mismatch" and len(error["message"]) < 400, error
