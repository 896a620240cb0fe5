"""Security: the Origin allow list, the token, TLS, no secrets in logs, one log line a job.

All through the real server on a loopback port with real websocket clients.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import ssl
import subprocess
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from layerbridge.client import Client, ServerError
from layerbridge.server import ServerConfig
from tests.helpers import (
    FaultyEngine,
    GatedEngine,
    check_job_complete,
    image_input,
    raise_bug,
    wait_until,
)
from tests.synthetic import flat_design as design

TOKEN = "tok-Zq8x3KvN1pL0"


def greet(url: str, origin: str | None = None, token: object = None, **kwargs) -> dict:
    """Open a websocket (optionally with an Origin), say hello, return the reply."""
    message = {"type": "hello", "protocol": 1, "client": "sec/1"}
    if token is not None:
        message["token"] = token
    with connect(url, origin=origin, **kwargs) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps(message))
        return json.loads(ws.recv(10))


def test_browser_origins_get_403_and_native_or_allowed_ones_get_in(serve, classic_engine):
    running = serve(classic_engine, allowed_origins=["uxp://layerbridge"])
    for origin in [
        "http://localhost:8000",
        "https://evil.example",
        "null",  # a file:// page or a sandboxed iframe
        "uxp://layerbridge.evil.example",
        "uxp://layerbridge:1",
        "http://127.0.0.1:7861",
    ]:
        with pytest.raises(InvalidStatus) as refused:
            greet(running.url, origin=origin)
        assert refused.value.response.status_code == 403, origin
    assert greet(running.url, origin="uxp://layerbridge")["type"] == "welcome"
    assert greet(running.url)["type"] == "welcome"  # native clients send no Origin


def test_a_token_is_required_off_loopback() -> None:
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        with pytest.raises(ValueError, match="--token"):
            ServerConfig(host=host).check()
        ServerConfig(host=host, token=TOKEN).check()
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        ServerConfig(host=host).check()


def test_only_the_exact_token_gets_in_and_it_is_compared_in_constant_time(
    serve, classic_engine, monkeypatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("layerbridge.identity.hmac.compare_digest", spy)
    running = serve(classic_engine, token=TOKEN, failed_token_delay_s=0.001)
    wrong = [None, "", "guess", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), " " + TOKEN, 12345, [TOKEN]]
    for token in wrong:
        with connect(running.url) as ws:
            message = {"type": "hello", "protocol": 1, "client": "intruder"}
            if token is not None:
                message["token"] = token
            ws.send(json.dumps(message))
            reply = json.loads(ws.recv(10))
            assert reply["code"] == "unauthorized", token
            assert TOKEN not in reply["message"]
            # the connection is closed after it: nothing more gets through
            with pytest.raises(ConnectionClosed) as closed:
                ws.send(json.dumps({"type": "fetch", "job": "x"}))
                ws.recv(10)
            assert closed.value.rcvd.code == 1008
    assert greet(running.url, token=TOKEN)["type"] == "welcome"
    with Client(running.url, "friend", token=TOKEN) as client:
        image = design(seed=5)
        check_job_complete(client.run("decompose", {}, [image_input(image)], timeout=60), image)
    # every token went through hmac.compare_digest, never == (a non-string as b"")
    strings = [t if isinstance(t, str) else "" for t in wrong] + [TOKEN, TOKEN]
    assert sorted(a.decode() for a, _ in compared) == sorted(strings)
    assert all(b == TOKEN.encode() for _, b in compared)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_serves_wss_to_a_client_that_trusts_the_certificate(
    serve, classic_engine, certificate
) -> None:
    cert, key = certificate
    running = serve(classic_engine, certfile=str(cert), keyfile=str(key), token=TOKEN)
    assert running.url.startswith("wss://127.0.0.1:")
    trusting = ssl.create_default_context(cafile=str(cert))
    image = design(seed=8)
    with connect(running.url, ssl=trusting, max_size=None) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "client": "tls", "token": TOKEN}))
        assert json.loads(ws.recv(10))["type"] == "welcome"
        spec = {"name": "image", "width": image.shape[1], "height": image.shape[0]}
        ws.send(
            json.dumps(
                {"type": "submit", "job": "tls1", "op": "decompose", "params": {}, "inputs": [spec]}
            )
        )
        ws.send(image.tobytes())
        kinds = []
        while not kinds or kinds[-1] != "done":
            frame = ws.recv(30)
            if isinstance(frame, str):
                kinds.append(json.loads(frame)["type"])
        assert "layer" in kinds
    # a client that does not trust the certificate, or speaks plain ws, gets nothing
    with pytest.raises(ssl.SSLCertVerificationError):
        greet(running.url, ssl=ssl.create_default_context())
    with pytest.raises(Exception):  # noqa: B017 - any failure: the handshake is not HTTP
        greet(running.url.replace("wss://", "ws://"), open_timeout=3)


def test_the_token_never_appears_in_logs_even_at_debug(serve, classic_engine, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("websockets", "websockets.server", "websockets.client", "layerbridge"):
        caplog.set_level(logging.DEBUG, logger=name)
    running = serve(FaultyEngine(classic_engine, {2: raise_bug}), token=TOKEN)
    with Client(running.url, "friend", token=TOKEN) as client:
        client.run("decompose", {}, [image_input(design(seed=1))], timeout=60)
        with pytest.raises(ServerError):
            client.run("decompose", {}, [image_input(design(seed=2))], timeout=60)
        client.fetch("nothing")
        client.receive(timeout=10)
    with pytest.raises(ServerError):
        Client(running.url, "intruder", token=TOKEN[:-1] + "!").connect()
    wait_until(lambda: not running.server.clients)
    assert len(caplog.records) > 10  # DEBUG was on: the server and websockets did log
    assert any(r.name == "websockets.server" and "TEXT" in r.getMessage() for r in caplog.records)
    # The server's records: websockets.client's are this test's own client logging what
    # it sends, its own token included.
    for record in (r for r in caplog.records if r.name != "websockets.client"):
        assert TOKEN not in record.getMessage(), (record.name, record.getMessage())
        assert TOKEN[:-1] not in record.getMessage(), (record.name, record.getMessage())


LINE = re.compile(
    r"job=(?P<job>\S+) op=(?P<op>\w+) client=(?P<client>\S+) inputs=(?P<inputs>\S+) "
    r"layers=(?P<layers>\d+) queued_s=(?P<queued>[\d.]+) run_s=(?P<run>[\d.]+) "
    r"outcome=(?P<outcome>\w+)(?: code=(?P<code>\w+))?$"
)


def test_each_job_logs_one_structured_line(serve, classic_engine, caplog) -> None:
    caplog.set_level(logging.INFO, logger="layerbridge.jobs")
    engine = GatedEngine(FaultyEngine(classic_engine, {2: raise_bug}))
    engine.gate.set()
    running = serve(engine, job_timeout_s=30)
    with running.client("logged") as client:
        ok = client.submit("decompose", {}, [image_input(design(seed=1))])
        client.wait(ok, timeout=60)
        failed = client.submit("decompose", {}, [image_input(design(seed=2))])
        with pytest.raises(ServerError):
            client.wait(failed, timeout=60)
        engine.gate.clear()
        cancelled = client.submit("decompose", {}, [image_input(design(64, 48, seed=3))])
        wait_until(lambda: running.server.worker.running is not None)
        client.cancel(cancelled)
        assert client.wait(cancelled, timeout=60).cancelled
    wait_until(lambda: running.server.worker.running is None)
    lines = [r for r in caplog.records if r.name == "layerbridge.jobs" and "job=" in r.message]
    parsed = {}
    for record in lines:
        assert record.levelno == logging.INFO
        match = LINE.match(record.getMessage())
        assert match, record.getMessage()
        assert match["job"] not in parsed, "more than one line for a job"
        parsed[match["job"]] = match
    assert set(parsed) == {ok, failed, cancelled}
    assert parsed[ok]["outcome"] == "done" and int(parsed[ok]["layers"]) >= 2
    assert parsed[ok]["inputs"] == "image=160x120" and parsed[ok]["op"] == "decompose"
    assert parsed[ok]["client"].startswith("logged#")
    assert (parsed[failed]["outcome"], parsed[failed]["code"]) == ("failed", "engine_failed")
    assert parsed[cancelled]["outcome"] == "cancelled"
    assert parsed[cancelled]["inputs"] == "image=64x48"
