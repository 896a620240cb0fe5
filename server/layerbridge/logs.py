"""Logging shared by the server and the client: websockets' frame log without the token.

The GIMP plug-in ships a copy of this module with the client.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.frames import Opcode


class TokenSafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' connection logger without the contents of text frames going one way.

    At DEBUG websockets logs the start of every frame; a ``hello`` carries the token,
    which must never reach a log. ``direction`` is ``">"`` for frames sent (a client)
    or ``"<"`` for frames received (the server). All else is logged as websockets does.
    """

    def __init__(self, logger: logging.Logger, direction: str) -> None:
        super().__init__(logger, {})
        self.direction = direction

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        frame = args[0] if args else None
        if msg == f"{self.direction} %s" and getattr(frame, "opcode", None) is Opcode.TEXT:
            size = len(getattr(frame, "data", b""))
            args = (f"TEXT [{size} bytes, not logged: it may hold the token]",)
        super().log(level, msg, *args, **kwargs)
