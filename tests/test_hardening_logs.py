"""Logs a client cannot forge or read secrets from, and a token that cannot be guessed
at speed: the real server (in-process and as `layerbridge serve`), real clients."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from layerbridge.logs import escape
from tests.helpers import Peer, outcome, raw_connect, read_frame, wait_until
from tests.synthetic import flat_design as design

TOKEN = "tok-Zq8x3KvN1pL0wE"


def test_a_client_name_cannot_forge_a_log_line(serve, classic_engine, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="layerbridge")
    running = serve(classic_engine)
    forged = "gimp\n2026-01-01 00:00:00 ERROR layerbridge.server: FORGED outcome=done"
    with Peer(running.url, forged) as peer:
        peer.submit("j1", design(seed=1))
        assert outcome(peer.until_final("j1")) == "done"
    wait_until(lambda: not running.server.clients)
    ours = [r for r in caplog.records if r.name.startswith("layerbridge")]
    assert any("FORGED" in r.getMessage() for r in ours)  # the name was logged...
    for record in ours:  # ...on its own line, with no field of its own
        text = record.getMessage()
        assert "\n" not in text and "\r" not in text, text
        assert " FORGED" not in text and " outcome=done" not in text.split("client=")[-1][:80]
    assert escape("a\nb c\x1b[31m\u202e") == "a\\x0ab\\x20c\\x1b[31m\\u202e"


def send_fragmented(sock, text: str, pieces: int) -> None:
    """One text message in ``pieces`` fragments (first TEXT, then CONT frames)."""
    data = text.encode()
    size = -(-len(data) // pieces)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    for n, chunk in enumerate(chunks):
        opcode = 0x1 if n == 0 else 0x0
        fin = 0x80 if n == len(chunks) - 1 else 0
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(chunk))
        sock.sendall(bytes([fin | opcode, 0x80 | len(chunk)]) + mask + masked)


def test_no_token_in_the_log_at_debug_even_in_fragments(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "layerbridge.cli", "--log-level", "debug", "serve"]
        + ["--port", "0", "--token", TOKEN, "--output-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = server.stdout.readline()
        assert "ws://127.0.0.1:" in line, server.stderr.read() if server.poll() else line
        url = line.split()[-1]
        hello = json.dumps({"type": "hello", "protocol": 1, "client": "frag", "token": TOKEN})
        secrets = []
        for pieces in (7, 3, len(hello)):
            sock = raw_connect(url)
            sock.settimeout(10)
            send_fragmented(sock, hello, pieces)
            opcode, payload = read_frame(sock)
            assert json.loads(payload)["type"] == "welcome"
            secrets.append(json.loads(payload)["secret"])
            sock.close()
        sock = raw_connect(url)  # and a wrong token, fragmented
        sock.settimeout(10)
        send_fragmented(sock, hello.replace(TOKEN, TOKEN[::-1]), 5)
        assert json.loads(read_frame(sock)[1])["code"] == "unauthorized"
        sock.close()
    finally:
        server.send_signal(signal.SIGINT)
        _, log = server.communicate(timeout=60)
    assert "TEXT" in log or "CONT" in log  # debug logging was on and saw the frames
    for secret in secrets:  # the welcome the server sent is not in its log either
        assert secret[:12] not in log
    for secret in (TOKEN, TOKEN[::-1]):
        for start in range(len(secret) - 4):
            piece = secret[start : start + 5]
            assert piece not in log, f"{piece!r} of the token is in the log"


def test_wrong_tokens_are_answered_ever_more_slowly(serve, classic_engine) -> None:
    running = serve(classic_engine, token=TOKEN, failed_token_delay_s=0.1)
    started = time.monotonic()
    for attempt in range(5):
        try:
            with Peer(running.url, "guess", hello={"token": f"guess-{attempt}"}) as peer:
                assert peer.welcome.get("code") == "unauthorized", peer.welcome
        except ConnectionClosed:
            pass
    slow = time.monotonic() - started
    print(f"\n5 wrong tokens took {slow:.2f} s")
    assert slow >= 0.1 + 0.2 + 0.4 + 0.8 + 1.6 - 0.2, slow  # doubling from 0.1 s
    started = time.monotonic()
    with Peer(running.url, "friend", hello={"token": TOKEN}) as peer:
        assert peer.welcome["type"] == "welcome"
    assert time.monotonic() - started < 1.5  # the right token is not delayed
