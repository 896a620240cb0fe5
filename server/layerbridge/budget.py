"""One memory budget, in bytes, for everything the server holds for its clients.

What a server holds grows with what clients send and ask for: queued jobs' input pixels,
the running job's inputs and layers, kept results (cancelled and failed jobs included),
frames still owed to slow readers, and the inputs of a submit still arriving. The server
registers a function that measures each of these; :meth:`MemoryBudget.refusal` adds them
up when new work asks to come in and says why it cannot, before the budget is exceeded.
Measured on demand rather than counted up and down, so no path can forget to give bytes
back.

Work means the whole of it: a job reserves, from the moment it is admitted, its inputs, the
layers it is expected to make and, for the time it may run, its engine's working memory
(:func:`working_bytes`), so that what the server's processes hold stays within the budget
by construction. Memory that is let go is handed back to the system
(:func:`release_free_memory`, :func:`configure_allocator`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import time
from collections.abc import Callable

from layerbridge.engines.base import Engine

MiB = 1 << 20
MAKE_ROOM_EVERY_S = 0.25

#: The classic engine's working memory per job, until its class states it
#: (:meth:`Engine.working_bytes`): a worker process of its own plus a part per pixel.
#: Measured through the real server, as the growth of the summed PSS of the server and its
#: processes over the level before one job: 2048x2048 photo-like +924 MiB (231 MB/MP),
#: design-like +782 MiB, flat design +675 MiB; 1024x1024 photo-like +262 MiB (fit: 40 MiB
#: + 221 bytes a pixel). With headroom:
CLASSIC_WORKING_FIXED = 64 * MiB
CLASSIC_WORKING_PER_PIXEL = 232
_CLASSIC = ("layerbridge.engines.classic.engine", "ClassicEngine")

# glibc's mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Blocks from this size up get pages of their own, returned to the system when freed.
MMAP_THRESHOLD = 256 * 1024


def working_bytes(engine: Engine, pixels: int) -> int:
    """The memory one job of ``engine`` over ``pixels`` input pixels needs while it runs,
    beyond its inputs and layers."""
    own = engine.working_bytes(pixels)
    if own or (type(engine).__module__, type(engine).__name__) != _CLASSIC:
        return own
    return CLASSIC_WORKING_FIXED + CLASSIC_WORKING_PER_PIXEL * pixels


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``).

    Many small freed objects (thousands of let-go jobs) leave the allocator holding pages
    the process no longer uses; without this the server's RSS stays at its peak after a
    burst. A no-op where there is no glibc.
    """
    # A let-go job is a cycle (its context's progress callback refers back to it), freed
    # only by the cycle collector, whose full passes are rare when little is allocated: its
    # frames would stay until then.
    gc.collect()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def configure_allocator() -> None:
    """Make the heap give big blocks back as soon as they are freed (glibc; else a no-op).

    glibc raises its mmap threshold to the size of each big block freed (up to 32 MiB), so
    after the first large image every later input, frame and layer of that size comes from
    the heap, whose free pages stay with the process after the burst. A fixed threshold
    keeps them in pages of their own; two arenas keep job threads from each growing one.
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        mallopt(_M_ARENA_MAX, 2)


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
