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
from typing import Generic, Protocol, TypeVar


class Positioned(Protocol):
    """A queued job, as the announcer sees it: hashable by identity."""

    def __hash__(self) -> int: ...


JobT = TypeVar("JobT", bound=Positioned)


class PositionAnnouncer(Generic[JobT]):
    """Announces queue positions through ``tell(job, position)``, coalesced and throttled."""

    def __init__(
        self,
        order: Callable[[], Sequence[JobT]],
        tell: Callable[[JobT, int], None],
        min_interval_s: float = 0.5,
    ) -> None:
        self.order, self.tell, self.min_interval_s = order, tell, min_interval_s
        self._told: dict[JobT, tuple[int, float]] = {}  # job -> (position, when)
        self._soon: asyncio.Handle | None = None
        self._later: asyncio.TimerHandle | None = None

    def changed(self) -> None:
        """The queue changed: announce once the current burst of events has been handled."""
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_soon(self._announce)

    def tell_new(self, job: JobT) -> None:
        """A job just queued hears its position now, before the worker may take it; the
        jobs it moved hear theirs with the next announcement."""
        order = list(self.order())
        if job in order:
            position = order.index(job)
            self.tell(job, position)
            self._told[job] = (position, time.monotonic())
        self.changed()

    def _announce(self) -> None:
        self._soon = None
        if self._later is not None:
            self._later.cancel()
            self._later = None
        now = time.monotonic()
        told: dict[JobT, tuple[int, float]] = {}
        retry_at: float | None = None
        for position, job in enumerate(self.order()):
            last = self._told.get(job)
            if last is not None and last[0] == position:
                told[job] = last
                continue
            # A job's first position and position 0 are told at once; moves are throttled.
            due = 0.0 if last is None or position == 0 else last[1] + self.min_interval_s
            if last is None or now >= due:
                self.tell(job, position)
                told[job] = (position, now)
            else:
                told[job] = last
                retry_at = due if retry_at is None else min(retry_at, due)
        self._told = told  # jobs that left the queue are forgotten
        if retry_at is not None:
            self._later = asyncio.get_running_loop().call_later(retry_at - now, self._announce)
