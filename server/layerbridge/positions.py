"""Queue positions, told without amplification.

Every change to the queue (a submit, a cancel, a job starting) can move every queued job.
Telling each queued job its new position on every change lets one client that submits
and cancels in a loop make the server send a message to every other queued job per
message it sends. :class:`PositionAnnouncer` coalesces: changes are gathered and
announced once per event-loop pass, a job hears only a position that differs from the
last it was told, and at most once per ``min_interval_s`` (the newest position always
follows, and reaching position 0 is told at once).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol


class Positioned(Protocol):
    """A queued job, as the announcer sees it: hashable by identity."""

    def __hash__(self) -> int: ...


class PositionAnnouncer:
    """Announces queue positions through ``tell(job, position)``, coalesced and throttled."""

    def __init__(
        self,
        order: Callable[[], Sequence[Positioned]],
        tell: Callable[[Positioned, int], None],
        min_interval_s: float = 0.5,
    ) -> None:
        self.order, self.tell, self.min_interval_s = order, tell, min_interval_s
        self._told: dict[int, tuple[int, float]] = {}  # id(job) -> (position, when)
        self._pending: asyncio.Handle | None = None

    def changed(self) -> None:
        """The queue changed: announce once the current burst of events has been handled."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_soon(self._announce)

    def _announce(self) -> None:
        self._pending = None
        now = time.monotonic()
        told: dict[int, tuple[int, float]] = {}
        retry_at: float | None = None
        for position, job in enumerate(self.order()):
            last = self._told.get(id(job))
            told[id(job)] = last if last is not None else (-1, 0.0)
            if last is not None and last[0] == position:
                continue
            due = 0.0 if last is None or position == 0 else last[1] + self.min_interval_s
            if now >= due:
                self.tell(job, position)
                told[id(job)] = (position, now)
            else:
                retry_at = due if retry_at is None else min(retry_at, due)
        self._told = told  # jobs that left the queue are forgotten
        if retry_at is not None:
            self._pending = asyncio.get_running_loop().call_later(retry_at - now, self._announce)
