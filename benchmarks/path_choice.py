"""How much the classic engine's switch between its two paths for designs costs, and what
choosing better could gain.

A design is taken one element at a time, or in blocks of elements close together when it
has more than ``TUNING.max_elements`` components or they make more than
``TUNING.max_layers`` elements (glyphs joined into lines). This runs every design of the
folders given three ways in this process: as the switch decides, every design one by one,
and every design in blocks (photos, which have no page, are untouched). Per design it prints
both paths' alpha soft IoU at 0 and 2 merges and the path the switch took; then the means of
the three runs and of the better path per design: the most any switch could add over the
one the engine has.

``--scales`` asks it again of every design drawn that many times as large (as in
tuning_sensitivity.py): a switch that counts pixels' worth of pieces decides differently at
another size, and the better path may change too.

    python benchmarks/path_choice.py ../shared/testdata/psd-dev tests/data/psd \\
        --scales 0.75 --jobs 2

Each run decomposes every design once (about three minutes for the 63 of the development set
on 2 cores), three runs a size.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Literal

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_sensitivity import (  # noqa: E402
    Scores,
    design_arguments,
    designs,
    score_designs,
    tuned,
)

#: How a run takes designs: as the switch decides, or all one way.
Mode = Literal["switch", "design", "blocks"]
MODES: tuple[Mode, ...] = ("switch", "design", "blocks")
#: The counts past which a design is taken in blocks.
LIMITS = ("max_elements", "max_layers")
#: A design is on the worse path when the other one scores this much more (0 plus 2 merges).
MARGIN = 0.02


def forced(mode: Mode) -> AbstractContextManager[None]:
    """Every design taken ``mode``'s way while the block runs ("switch": as the engine
    decides). The switch compares counts with ``TUNING.max_elements`` (components) and
    ``TUNING.max_layers`` (elements, glyphs joined into lines): no count or every count
    passes both."""
    if mode == "switch":
        return tuned()
    limit = sys.maxsize if mode == "design" else 0
    return tuned(**{name: limit for name in LIMITS})


def run(task: tuple[Mode, float, list[Path], Path]) -> tuple[Mode, float, Scores]:
    mode, scale, paths, cache = task
    with forced(mode):
        return mode, scale, score_designs(paths, cache, scale)


def _taken(now: tuple[float, ...], design: tuple[float, ...],
           blocks: tuple[float, ...]) -> str:
    """The path the switch took, told by its scores ("either" where both score alike)."""
    if now == design and now != blocks:
        return "design"
    if now == blocks and now != design:
        return "blocks"
    return "either"


def table(runs: dict[tuple[Mode, float], Scores], scales: list[float]) -> str:
    """Markdown: the means per size, then every design's two paths at each size."""
    names = sorted(runs["switch", scales[0]])
    lines = ["| size | as the switch decides | all one by one | all in blocks | the better "
             "path each | designs on the worse path |", "|---|---|---|---|---|---|"]
    for scale in scales:
        now, design, blocks = (runs[mode, scale] for mode in MODES)
        better = {n: max(design[n], blocks[n], key=lambda s: s[0] + s[2]) for n in names}
        worse = [n for n in names if better[n][0] + better[n][2] - now[n][0] - now[n][2]
                 > MARGIN]
        cells = [" / ".join(f"{v:.4f}" for v in np.mean([s[n] for n in names], 0))
                 for s in (now, design, blocks, better)]
        lines.append(f"| x{scale:g} | " + " | ".join(cells) + f" | {len(worse)}: "
                     + ", ".join(worse) + " |")
    lines += ["", "IoU at 0 / 2 merges; the path the switch took marked *.", "",
              "| design | " + " | ".join(f"x{s:g} one by one | x{s:g} blocks" for s in scales)
              + " |", "|---" * (1 + 2 * len(scales)) + "|"]
    for n in names:
        cells = []
        for scale in scales:
            now, design, blocks = (runs[mode, scale][n] for mode in MODES)
            taken = _taken(now, design, blocks)
            for path, s in (("design", design), ("blocks", blocks)):
                cells.append(f"{s[0]:.3f} / {s[2]:.3f}" + (" *" if taken == path else ""))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = design_arguments(__doc__).parse_args()
    paths = designs(args.folders, args.only)
    scales = [1.0, *(s for s in args.scales if s != 1.0)]
    tasks = [(mode, scale, paths, args.cache) for scale in scales for mode in MODES]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = {(mode, scale): scores for mode, scale, scores in pool.map(run, tasks)}
    report = table(runs, scales)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")
    if args.json:
        args.json.write_text(json.dumps([{"mode": m, "scale": s, "scores": runs[m, s]}
                                         for m, s in runs], indent=1))


if __name__ == "__main__":
    main()
