"""One memory budget, in bytes, for everything the server holds for its clients.

What a server holds grows with what clients send and ask for: queued jobs' input pixels,
the running job's inputs and layers, kept results (cancelled and failed jobs included),
frames still owed to slow readers, and the inputs of a submit still arriving. The server
registers a function that measures each of these; :meth:`MemoryBudget.refusal` adds them
up when new work asks to come in and says why it cannot, before the budget is exceeded.
Measured on demand rather than counted up and down, so no path can forget to give bytes
back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time
from collections.abc import Callable

MiB = 1 << 20
MAKE_ROOM_EVERY_S = 0.25


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``).

    Many small freed objects (thousands of let-go jobs) leave the allocator holding pages
    the process no longer uses; without this the server's RSS stays at its peak after a
    burst. A no-op where there is no glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:
        trim(0)


def mib(nbytes: int) -> str:
    return f"{nbytes / MiB:.0f} MiB"


class MemoryBudget:
    """A byte limit over several measured sources, and room that can be made by evicting."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError("the memory budget must be a positive number of bytes")
        self.limit_bytes = limit_bytes
        self._sources: dict[str, Callable[[], int]] = {}
        self._make_room: Callable[[int], object] = lambda nbytes: None
        self._room_made_at = -1.0

    def add_source(self, name: str, measure: Callable[[], int]) -> None:
        """Count what ``measure()`` returns (bytes held now) under ``name``."""
        self._sources[name] = measure

    def on_full(self, make_room: Callable[[int], object]) -> None:
        """``make_room(nbytes)`` frees what it can (kept results) when work needs room."""
        self._make_room = make_room

    def usage(self) -> dict[str, int]:
        return {name: measure() for name, measure in self._sources.items()}

    def used(self) -> int:
        return sum(self.usage().values())

    def refusal(self, needed: int) -> str | None:
        """None if ``needed`` more bytes fit (after evicting what may be evicted), else a
        message saying what is held and what to do."""
        over = self.used() + needed - self.limit_bytes
        now = time.monotonic()
        # Making room walks every kept job: under a flood of refused work, a few times a
        # second is enough.
        if over > 0 and now - self._room_made_at >= MAKE_ROOM_EVERY_S:
            self._room_made_at = now
            self._make_room(over)
        usage = self.usage()
        if sum(usage.values()) + needed <= self.limit_bytes:
            return None
        held = ", ".join(f"{name} {mib(n)}" for name, n in usage.items() if n >= MiB)
        return (
            f"the server is holding {mib(sum(usage.values()))} of work ({held or 'little'}) "
            f"and this needs {mib(needed)} more, over its memory budget of "
            f"{mib(self.limit_bytes)} (--memory-budget): try again when jobs have finished "
            "and been read, or send a smaller image"
        )
