"""What a replica streams to the front for one job: plain data, never exceptions.

Ray pickles whatever a replica yields. An exception class of ours raised in a replica
reaches the caller as ``UnserializableException`` with its code and message lost, so a
job's outcome travels as an :class:`Outcome` like every other event.

A stream is one :class:`Started`, then :class:`Report` and :class:`LayerMade` events in
the order the engine made them, then exactly one :class:`Outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from layerbridge.engines.base import JobContext
from layerbridge.types import ErrorCode, Layer

OutcomeState = Literal["done", "failed", "cancelled"]


@dataclass(frozen=True)
class RunRecord:
    """How a replica's engine run ended, as the replica itself saw it."""

    job: str
    state: OutcomeState
    #: Model steps the engine reported after the cancel reached the replica (None: no
    #: cancel reached it while the engine ran).
    steps_after_cancel: int | None
    #: Seconds from the cancel reaching the replica to the engine thread ending.
    stop_s: float | None


@dataclass(frozen=True)
class Started:
    """The replica took the job and its engine thread is running."""

    replica: str
    pid: int
    #: Engine runs alive in this replica, this one included: 1 unless a cancelled run
    #: were still going, which the replica's lock exists to prevent.
    busy: int
    #: The last run this replica finished before this one.
    previous: RunRecord | None


@dataclass(frozen=True)
class Report:
    """A progress or preview report, exactly as the engine gave it to its JobContext."""

    event: dict[str, Any]


@dataclass(frozen=True)
class LayerMade:
    """A finished layer, with the layer count the engine had announced by then."""

    layer: Layer
    count: int | None


@dataclass(frozen=True)
class Outcome:
    """How the job ended; ``code`` and ``message`` are an EngineError's when it failed."""

    state: OutcomeState
    code: ErrorCode | str | None = None
    message: str | None = None


Event = Started | Report | LayerMade | Outcome


def replay_report(ctx: JobContext, event: dict[str, Any]) -> None:
    """Hand a replica's report to the front's JobContext, as if its engine ran here."""
    if "preview" in event:
        ctx.preview(np.array(event["preview"]))  # a copy: see remote.owned
    else:
        ctx.progress(event["fraction"], event["stage"], event.get("step"), event.get("steps"))
