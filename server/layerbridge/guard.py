"""What a connection may hold before it has proved anything, and for how long.

A connection that has not said ``hello`` is a stranger: it may send only small frames
(one text frame's worth, see :data:`PRE_HELLO_FRAME_BYTES`), only so many strangers are
let in at once (the rest get HTTP 503 at the handshake), and a stranger that stays silent
is closed after ``hello_timeout_s``. Once greeted, a connection that stops reading is
closed when a send has waited ``send_timeout_s``: its frames would otherwise pin the
memory of every job it streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Awaitable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

log = logging.getLogger("layerbridge.server")

#: Largest frame accepted before ``hello``: a text message's limit (protocol 64 KiB).
PRE_HELLO_FRAME_BYTES = 64 * 1024
#: Close code for a connection that said nothing in time (policy violation).
CLOSE_POLICY = 1008


class ConnectionGuard:
    """Counts connections, all and those not greeted yet (in all and per address), and
    turns away the excess: one address may hold only part of the places before hello, so
    a guesser waiting out its failed-token delays cannot keep everyone else out."""

    def __init__(self, max_connections: int, max_before_hello: int, per_address: int) -> None:
        self.max_connections = max_connections
        self.max_before_hello = max_before_hello
        self.max_before_hello_per_address = per_address
        self.open = 0
        self.waiting_for_hello = 0
        self._waiting_at: dict[str, int] = {}

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' ``process_request`` hook: 503 when a cap is reached."""
        waiting_here = self._waiting_at.get(_address(connection), 0)
        if self.open >= self.max_connections:
            reason = f"the server has its maximum of {self.max_connections} connections"
        elif self.waiting_for_hello >= self.max_before_hello:
            reason = f"{self.max_before_hello} connections are waiting to say hello"
        elif waiting_here >= self.max_before_hello_per_address:
            reason = f"{waiting_here} connections from your address are waiting to say hello"
        else:
            return None
        log.warning("refused a connection from %s: %s", _address(connection), reason)
        return connection.respond(
            http.HTTPStatus.SERVICE_UNAVAILABLE, f"{reason}; try again in a moment\n"
        )

    def opened(self, address: str) -> None:
        self.open += 1
        self.waiting_for_hello += 1
        self._waiting_at[address] = self._waiting_at.get(address, 0) + 1

    def greeted(self, address: str) -> None:
        self.waiting_for_hello -= 1
        left = self._waiting_at.get(address, 1) - 1
        if left > 0:
            self._waiting_at[address] = left
        else:
            self._waiting_at.pop(address, None)

    def closed(self, address: str, greeted: bool) -> None:
        self.open -= 1
        if not greeted:
            self.greeted(address)  # no longer waiting either way


def allow_full_frames(ws: ServerConnection, max_frame_bytes: int) -> None:
    """After ``hello``: frames up to the server's pixel limit (websockets reads the limit
    from its protocol object for every new frame)."""
    ws.protocol.max_message_size = max_frame_bytes


def close_unless_greeted(
    ws: ServerConnection, is_greeted: Any, timeout_s: float
) -> asyncio.TimerHandle:
    """Close ``ws`` after ``timeout_s`` unless ``is_greeted()`` by then."""

    def check() -> None:
        if not is_greeted():
            log.info("closed %s: no hello within %g s", _address(ws), timeout_s)
            asyncio.ensure_future(ws.close(CLOSE_POLICY, "no hello in time"))

    return asyncio.get_running_loop().call_later(timeout_s, check)


async def send_within(ws: ServerConnection, sending: Awaitable[None], timeout_s: float) -> None:
    """Await ``sending``; drop the connection if the peer reads nothing for ``timeout_s``.

    "Reads nothing" is judged by the connection's write buffer, which shrinks whenever the
    peer takes bytes: a slow reader on a thin link keeps its connection however long a big
    layer takes, a reader that stopped is aborted (a close handshake would wait behind the
    same full buffer). The next send on it raises ``ConnectionClosed``, which ends its
    streams as usual.
    """
    task = asyncio.ensure_future(sending)
    loop = asyncio.get_running_loop()
    last_size, last_progress = -1, loop.time()
    while True:
        try:
            done, _ = await asyncio.wait({task}, timeout=min(1.0, timeout_s))
        except asyncio.CancelledError:  # the stream was stopped: so is its send
            task.cancel()
            raise
        if done:
            return task.result()
        size = ws.transport.get_write_buffer_size()
        if last_size < 0 or size < last_size:
            last_progress = loop.time()
        last_size = size
        if loop.time() - last_progress >= timeout_s:
            log.info("closed %s: it read nothing for %g s", _address(ws), timeout_s)
            ws.transport.abort()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return


def _address(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else "?"


class Pace:
    """At most ``rate`` messages a second from one connection (bursts of ``rate``), and a
    turn for every other connection after each message.

    A handler whose socket is full of frames would otherwise handle them all before any
    other connection is served: one client sending submit+cancel pairs as fast as it can
    kept every other client's handshake waiting. Past the rate the handler waits, stops
    reading, and TCP slows the sender down; nothing is refused.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._last = asyncio.get_running_loop().time()

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) / self.rate)
            self._tokens = 1.0
            self._last = asyncio.get_running_loop().time()
        else:
            await asyncio.sleep(0)  # a turn for the others
        self._tokens -= 1
