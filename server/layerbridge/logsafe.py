"""Logging that a client cannot forge or use to leak a secret.

Every string a client chose (its ``hello`` name, a job id, a file name) goes through
:func:`escape` before it reaches a log line, so a newline cannot start a forged line and a
space cannot add a forged ``key=value`` field. :class:`FrameSafeLogger` keeps the contents
of received text frames, and of every fragment of a fragmented message, out of
``websockets``' debug log: a ``hello`` carries the token.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.frames import Opcode

#: Characters of a logged value kept as they are; everything else is escaped.
_PLAIN_PUNCTUATION = set("!#$%&'()*+,-./:;<>?@[]^_`{|}~")
#: Longest logged value: a 4000-character name is not worth a log line of that size.
MAX_LOGGED_CHARS = 200


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


# A received data frame whose contents may hold a secret: a text frame, or any fragment
# of a fragmented message (websockets logs each fragment as it arrives).
_SECRET_OPCODES = (Opcode.TEXT, Opcode.CONT)


class FrameSafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' connection logger without the contents of frames received.

    At DEBUG websockets logs the start of every frame it receives (``"< %s"``), fragments
    included. This adapter replaces what a text frame or a continuation frame holds with
    its size; everything else is logged as websockets does. ``direction`` is ``"<"`` on a
    server (frames received) and ``">"`` on a client (frames sent).
    """

    def __init__(self, logger: logging.Logger, direction: str = "<") -> None:
        super().__init__(logger, {})
        self.direction = direction

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        frame = args[0] if args else None
        if msg == f"{self.direction} %s" and getattr(frame, "opcode", None) in _SECRET_OPCODES:
            kind = frame.opcode.name  # type: ignore[union-attr]
            size = len(frame.data)  # type: ignore[union-attr]
            args = (f"{kind} [{size} bytes, not logged: it may hold the token]",)
        super().log(level, msg, *args, **kwargs)
