"""Logging shared by the server and the client: websockets' frame log without the token,
and log values a client cannot forge lines with.

Every string a client chose (its ``hello`` name, above all) goes through :func:`escape`
before it reaches a log line, so a newline cannot start a forged line and a space cannot
add a forged ``key=value`` field. :class:`TokenSafeLogger` keeps what text frames hold,
and every fragment of a fragmented message, out of ``websockets``' debug log: a ``hello``
carries the token.

The GIMP plug-in ships a copy of this module with the client.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.frames import Opcode

#: Characters of a logged value kept as they are; everything else is escaped.
_PLAIN_PUNCTUATION = frozenset("!#$%&'()*+,-./:;<>?@[]^_`{|}~")
#: Longest logged value: a 200-character name is not worth a longer log line.
MAX_LOGGED_CHARS = 200
# Frames whose contents may hold a secret: text, and any fragment of a fragmented message
# (websockets logs each fragment as it comes, a continuation frame says nothing of its kind).
_SECRET_OPCODES = (Opcode.TEXT, Opcode.CONT)


def escape(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """``value`` as one token of a log line: letters, digits and plain punctuation as they
    are, everything else (newlines, spaces, quotes, backslashes, control and format
    characters, non-ASCII) as a backslash escape; cut to ``limit`` characters."""
    text = str(value)
    shown = "".join(_escape_char(c) for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def _escape_char(char: str) -> str:
    if char.isascii() and (char.isalnum() or char in _PLAIN_PUNCTUATION):
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class TokenSafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' connection logger without the contents of text frames.

    At DEBUG websockets logs the start of every frame, fragments included; a ``hello``
    carries the token and a ``welcome`` the client's secret, which must never reach a log.
    What a text or continuation frame holds is replaced by its size. ``directions`` are
    ``">"`` for frames sent and ``"<"`` for frames received (both by default). All else is
    logged as websockets does.
    """

    def __init__(self, logger: logging.Logger, directions: str = "<>") -> None:
        super().__init__(logger, {})
        self.frame_messages = {f"{direction} %s" for direction in directions}

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        frame = args[0] if args else None
        opcode = getattr(frame, "opcode", None)
        if msg in self.frame_messages and opcode in _SECRET_OPCODES:
            size = len(getattr(frame, "data", b""))
            kind = getattr(opcode, "name", "TEXT")
            args = (f"{kind} [{size} bytes, not logged: it may hold the token]",)
        super().log(level, msg, *args, **kwargs)
