"""Decompositions in warm worker processes: cancelled at once, a crash kept apart, no start-up
cost per job.

The analysis spends seconds inside single library calls (connected components, matting) on
large images, where no cancel check can be reached; a worker process can be stopped at any
moment instead, and a crash in it (the kernel's out-of-memory killer) takes only it down.

Starting a process per job cost more than decomposing a small image (0.6-1 s a job: the fork
server forks, the child re-imports the server's main module, the pixels travel as start-up
arguments), so a worker serves job after job: it is killed and replaced only when a job is
cancelled (or timed out, which cancels it), when it crashes, or when a job left its heap
grown by more than :data:`RETIRE_GROWTH_MB` (it then exits by itself, giving that memory
back); one that served jobs and then waited :data:`IDLE_REFRESH_S` is swapped for a fresh
fork. Workers are forked from a clean fork server that has the engine imported (not from
the server, whose threads could hold locks at the fork).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from layerbridge.types import OUT_OF_MEMORY_ADVICE, EngineError, ErrorCode

#: (name, (y0, y1, x0, x1), uint8 RGBA pixels over that box), bottom first.
Result = list[tuple[str, tuple[int, int, int, int], np.ndarray]]
#: How often the parent looks for a cancel while the worker works (seconds).
POLL_S = 0.05
#: A worker whose heap (:func:`heap_mb`) grew by more than this over its size when it
#: started (a large job's heap that the allocator keeps) exits after the job instead of
#: waiting for the next one: an idle server should hold what it held before the job (the
#: attack soak found +60 MiB left with 256 here and two idle workers). A small job grows it
#: by about 4 MB.
RETIRE_GROWTH_MB = 48.0
#: Idle workers kept warm: the server runs one classic job at a time.
MAX_IDLE = 1
#: A worker that has served jobs and then waited this long is swapped for a fresh fork:
#: serving jobs copies the fork server's pages it shared (reference counts are writes), so
#: an idle server would otherwise hold tens of MB more than before its jobs.
IDLE_REFRESH_S = 10.0
#: The name of worker processes (``multiprocessing.active_children()``).
PROCESS_NAME = "classic-worker"

log = logging.getLogger("layerbridge.worker")

# Windows has no fork server: there each worker starts a fresh interpreter (about a second).
_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_context = multiprocessing.get_context(_METHOD)
if _METHOD == "forkserver":
    # Imported once in the fork server, so that no worker pays for it; pymatting (optional,
    # for photo edges) loads its compiled kernels on import. A module that is missing is
    # skipped.
    _context.set_forkserver_preload(["layerbridge.engines.classic.decompose", "pymatting"])


# --- in the worker process ----------------------------------------------------------------


def _serve(conn: Connection) -> None:
    """Decompose each ``(pixels, layers)`` received until the pipe closes or the heap grew."""
    from threadpoolctl import threadpool_limits

    from layerbridge.engines.classic.decompose import decompose_pieces

    # Its least squares and dot products are small: on two busy cores, BLAS threads that
    # wait for each other took 3-10x longer than one thread (the layers come out the same
    # byte for byte: benchmarks/layer_digests.py).
    threadpool_limits(1, user_api="blas")
    resting = heap_mb()
    while True:
        try:
            pixels, layers = conn.recv()
        except (EOFError, OSError):  # the server let this worker go
            return
        keep = _one_job(conn, decompose_pieces, pixels, layers)
        del pixels
        _trim_heap()
        growth = heap_mb() - resting
        if not keep or growth > RETIRE_GROWTH_MB:
            why = (f"its heap grew by {growth:.0f} MB (more than {RETIRE_GROWTH_MB:.0f})"
                   if keep else "its job failed unexpectedly")
            conn.send(("retired", why))
            conn.close()
            return
        conn.send(("ready",))


def _one_job(conn: Connection, decompose_pieces: Callable[..., Any], pixels: np.ndarray,
             layers: int | str) -> bool:
    """Run one job and send its outcome; False when the worker should not serve another."""
    try:
        pieces = decompose_pieces(pixels, layers, lambda f, s: conn.send(("progress", f, s)))
        out = [(p.name, p.box, np.clip(np.rint(p.pixels * 255.0), 0, 255).astype(np.uint8))
               for p in pieces]
        del pieces
        conn.send(("done", out))
        return True
    except EngineError as exc:
        conn.send(("error", exc.code, exc.message))
        return True
    except MemoryError:
        conn.send(("error", ErrorCode.OUT_OF_MEMORY,
                   f"the classic engine ran out of memory. {OUT_OF_MEMORY_ADVICE}"))
    except Exception as exc:  # reported to the user as engine_failed, with what it was
        conn.send(("error", ErrorCode.ENGINE_FAILED,
                   f"the classic engine failed: {type(exc).__name__}: {exc}"))
    return False  # after an unexpected failure, a fresh worker takes the next job


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc keeps them for the next malloc):
    an idle worker should hold little more than it did before its last job."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def heap_mb() -> float:
    """This process's own resident memory in MB: its anonymous pages (the heap, arrays),
    not the library code and files it pages in, which the page cache holds and shares
    (0 where /proc is missing: never retired)."""
    try:
        with open("/proc/self/statm") as statm:
            resident, shared = (int(field) for field in statm.read().split()[1:3])
    except (OSError, ValueError):
        return 0.0
    return (resident - shared) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- in the server ------------------------------------------------------------------------


class _Worker:
    """A worker process and the server's end of its pipe."""

    def __init__(self) -> None:
        #: No job served yet: its pages are still the fork server's.
        self.fresh = True
        #: Times it was given back to the pool: a swap timer acts only on the wait it was
        #: started for, not on a later one.
        self.waits = 0
        self.conn, child_end = _context.Pipe(duplex=True)
        self.process: BaseProcess = _context.Process(
            target=_serve, args=(child_end,), daemon=True, name=PROCESS_NAME)
        self.process.start()
        child_end.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def stop(self) -> None:
        """Kill it now (a cancel) and reap it."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def end(self) -> None:
        """Reap a worker that is leaving by itself."""
        self.process.join(5)
        self.stop()


class _Pool:
    """Idle warm workers; a job takes one (or starts one) and gives it back when it ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    worker.fresh = False
                    return worker
                worker.stop()
        worker = _Worker()
        worker.fresh = False
        return worker

    def give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(worker)
                worker.waits += 1
                if not worker.fresh:
                    timer = threading.Timer(IDLE_REFRESH_S, self._refresh,
                                            (worker, worker.waits))
                    timer.daemon = True
                    timer.start()
                return
        worker.stop()

    def _refresh(self, worker: _Worker, wait: int) -> None:
        """Swap ``worker`` for a fresh fork if it is still in its ``wait``-th wait (see
        IDLE_REFRESH_S)."""
        with self._lock:
            if worker not in self._idle or worker.waits != wait:
                return  # taken for a job meanwhile (and maybe back), or already let go
            self._idle.remove(worker)
        worker.stop()
        self.give_back(_Worker())

    def replace(self, worker: _Worker) -> None:
        """Stop ``worker`` and start a fresh one in its place, so that the next job finds a
        warm worker (the new one starts up while the server answers the cancel)."""
        worker.stop()
        self.give_back(_Worker())

    def idle_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._idle if w.pid is not None]


_pool = _Pool()


def idle_worker_pids() -> list[int]:
    """Process ids of the workers waiting for a job."""
    return _pool.idle_pids()


def decompose_in_child(
    pixels: np.ndarray,
    layers: int | str,
    progress: Callable[[float, str], None],
    check: Callable[[], None],
) -> Result:
    """Run :func:`decompose_pieces` in a warm worker process; ``check`` (which raises to
    cancel) is called every :data:`POLL_S` seconds, and whatever it raises stops the worker
    at once (a fresh one takes its place)."""
    worker = _pool.take()
    try:
        worker.conn.send((pixels, layers))
        outcome = _await_outcome(worker, progress, check)
    except BaseException:
        _pool.replace(worker)
        raise
    _settle(worker)
    if outcome[0] == "error":  # the worker reported it and is sound
        raise EngineError(outcome[1], outcome[2])
    return outcome[1]


def _await_outcome(worker: _Worker, progress: Callable[[float, str], None],
                   check: Callable[[], None]) -> tuple[Any, ...]:
    """The job's last message, ``("done", result)`` or ``("error", code, message)``; the
    progress messages before it go to ``progress``."""
    while True:
        check()
        if not worker.conn.poll(POLL_S):
            continue
        try:
            message: tuple[Any, ...] = worker.conn.recv()
        except EOFError:
            worker.process.join(1)
            code = worker.process.exitcode
            killed = code == -9  # what the kernel's out-of-memory killer sends
            raise EngineError(
                ErrorCode.OUT_OF_MEMORY if killed else ErrorCode.ENGINE_FAILED,
                f"the classic engine's worker stopped (exit code {code}). "
                f"{OUT_OF_MEMORY_ADVICE if killed else 'Please report this image.'}",
            ) from None
        if message[0] != "progress":
            return message
        progress(message[1], message[2])


def _settle(worker: _Worker) -> None:
    """After a job: back to the pool when the worker says it is ready, else reaped."""
    try:
        message: tuple[Any, ...] = worker.conn.recv()
    except (EOFError, OSError):
        message = ("gone", "its pipe closed")
    if message[0] == "ready":
        _pool.give_back(worker)
        return
    # Said once, so that a worker missing from the pool later is explained in the log.
    log.debug("classic worker %s leaves after its job: %s", worker.pid, message[1])
    worker.end()
