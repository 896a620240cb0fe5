"""One decomposition in a child process: cancelled at once, its memory returned when it ends.

The analysis spends seconds inside single library calls (connected components, matting) on
large images, where no cancel check can be reached; a child process can be stopped at any
moment instead. It also gives back everything it allocated when it exits, so a large job
does not leave the server's heap grown. Children are forked from a clean fork server that
has the engine imported (not from the server, whose threads could hold locks at the fork).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from layerbridge.types import OUT_OF_MEMORY_ADVICE, EngineError, ErrorCode

#: (name, (y0, y1, x0, x1), uint8 RGBA pixels over that box), bottom first.
Result = list[tuple[str, tuple[int, int, int, int], np.ndarray]]
#: How often the parent looks for a cancel while the child works (seconds).
POLL_S = 0.05

# Windows has no fork server: there each worker starts a fresh interpreter (about a second).
_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_context = multiprocessing.get_context(_METHOD)
if _METHOD == "forkserver":
    # Imported once in the fork server, so that no job pays for it; pymatting (optional, for
    # photo edges) loads its compiled kernels on import. A module that is missing is skipped.
    _context.set_forkserver_preload(["layerbridge.engines.classic.decompose", "pymatting"])


def _child(conn: Connection, pixels: np.ndarray, layers: int | str) -> None:
    from layerbridge.engines.classic.decompose import decompose_pieces

    try:
        pieces = decompose_pieces(pixels, layers, lambda f, s: conn.send(("progress", f, s)))
        out = [(p.name, p.box, np.clip(np.rint(p.pixels * 255.0), 0, 255).astype(np.uint8))
               for p in pieces]
        conn.send(("done", out))
    except EngineError as exc:
        conn.send(("error", exc.code, exc.message))
    except MemoryError:
        conn.send(("error", ErrorCode.OUT_OF_MEMORY,
                   f"the classic engine ran out of memory. {OUT_OF_MEMORY_ADVICE}"))
    except Exception as exc:  # reported to the user as engine_failed, with what it was
        conn.send(("error", ErrorCode.ENGINE_FAILED,
                   f"the classic engine failed: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def decompose_in_child(
    pixels: np.ndarray,
    layers: int | str,
    progress: Callable[[float, str], None],
    check: Callable[[], None],
) -> Result:
    """Run :func:`decompose_pieces` in a child; ``check`` (which raises to cancel) is called
    every :data:`POLL_S` seconds, and whatever it raises stops the child at once."""
    receive, send = _context.Pipe(duplex=False)
    child = _context.Process(target=_child, args=(send, pixels, layers), daemon=True,
                             name="classic-decompose")
    child.start()
    send.close()
    try:
        while True:
            check()
            if not receive.poll(POLL_S):
                continue
            try:
                message: tuple[Any, ...] = receive.recv()
            except EOFError:
                child.join(1)
                killed = child.exitcode == -9  # what the kernel's out-of-memory killer sends
                raise EngineError(
                    ErrorCode.OUT_OF_MEMORY if killed else ErrorCode.ENGINE_FAILED,
                    f"the classic engine's worker stopped (exit code {child.exitcode}). "
                    f"{OUT_OF_MEMORY_ADVICE if killed else 'Please report this image.'}",
                ) from None
            if message[0] == "progress":
                progress(message[1], message[2])
            elif message[0] == "done":
                return message[1]
            else:
                raise EngineError(message[1], message[2])
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
