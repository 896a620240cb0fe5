"""How sharply the development set's score hangs on each of the classic engine's thresholds.

A value tuned on a set of documents sits where the set scores best. On a plateau, nearby
values score the same and the value carries over to documents nobody tuned it on; on a peak
that one or two files set, a document that is not in the set is as likely to fall on either
side. For each threshold named and each factor, this runs the classic engine in this process
with that one value of ``TUNING`` scaled (whole numbers rounded), over every design of the
folders given, and prints the designs' mean alpha soft IoU at 0, 1 and 2 merges against the
run with every value as it is (the same process, first), with the files that move.

    python benchmarks/tuning_sensitivity.py ../shared/testdata/psd-dev tests/data/psd \\
        --names max_elements same_color --factors 0.75 1.33 --jobs 2 --markdown out.md

Each run decomposes every design once (about three minutes for the 63 of the development set
on 2 cores). The engine runs in this process, not through the server: bench_quality.py
measures what the server returns, and on the unchanged values the two give the same scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_quality import CACHE, MERGES, composite, documents, truth  # noqa: E402
from layerd_metric import Patch, evaluate_patches  # noqa: E402

from layerbridge.engines.classic.decompose import decompose_pieces  # noqa: E402
from layerbridge.engines.classic.tuning import TUNING  # noqa: E402

#: Per design, its IoU at 0, 1 and 2 merges.
Scores = dict[str, tuple[float, float, float]]


@contextmanager
def scaled(name: str, factor: float) -> Iterator[float | int]:
    """``TUNING.name`` times ``factor`` (rounded if a whole number) while the block runs; the
    new value is yielded. Every stage reads ``TUNING`` when it runs, so the one frozen
    instance is changed in place and put back."""
    _known(name)
    old = getattr(TUNING, name)
    new = round(old * factor) if isinstance(old, int) else old * factor
    object.__setattr__(TUNING, name, new)
    try:
        yield new
    finally:
        object.__setattr__(TUNING, name, old)


def score_designs(paths: list[Path], cache: Path) -> Scores:
    """Each design decomposed from its own composite, as bench_quality.py feeds the server,
    and scored against its true layers."""
    scores: Scores = {}
    for path in paths:
        true, height, width = truth(path, cache)
        pieces = decompose_pieces(composite(true, height, width), "auto", lambda *_: None)
        # The server sends 8-bit layers: score what a client receives, placed as it is.
        pred = [Patch.from_crop(np.rint(np.clip(p.pixels, 0, 1) * 255).astype(np.uint8),
                                p.box.x0, p.box.y0, height, width) for p in pieces]
        s = evaluate_patches(pred, true, height, width, MERGES)
        scores[path.name] = (s[0].iou, s[1].iou, s[2].iou)
    return scores


def _known(name: str) -> None:
    if name not in {f.name for f in fields(TUNING)}:
        raise SystemExit(f"no threshold named {name!r} in the classic engine's Tuning "
                         "(see server/layerbridge/engines/classic/tuning.py)")


def run(task: tuple[str, float, list[Path], Path]) -> tuple[str, float, float | int, Scores]:
    """One run: (name, factor, the value used, scores); name "" is the unchanged run."""
    name, factor, paths, cache = task
    if not name:
        return name, factor, 0, score_designs(paths, cache)
    with scaled(name, factor) as value:
        return name, factor, value, score_designs(paths, cache)


def table(base: Scores, runs: list[tuple[str, float, float | int, Scores]]) -> str:
    """Markdown: per run, the designs' means, their change, and the files that move."""
    names = sorted(base)
    before = np.array([base[n] for n in names])
    lines = [f"unchanged: {len(names)} designs, IoU 0m / 1m / 2m "
             + " / ".join(f"{v:.4f}" for v in before.mean(0)), "",
             "| threshold | value | IoU 0m / 1m / 2m | change 0m / 2m | files up / down at 0m "
             "(by more than 0.01) |", "|---|---|---|---|---|"]
    for name, factor, value, scores in runs:
        after = np.array([scores[n] for n in names])
        moved = after[:, 0] - before[:, 0]
        order = np.argsort(moved)
        down = [f"{names[i]} {moved[i]:+.3f}" for i in order if moved[i] < -0.01]
        up = [f"{names[i]} {moved[i]:+.3f}" for i in order[::-1] if moved[i] > 0.01]
        mean, change = after.mean(0), after.mean(0) - before.mean(0)
        lines.append(
            f"| {name} x{factor:g} | {getattr(TUNING, name):.4g} -> {value:.4g} | "
            + " / ".join(f"{v:.4f}" for v in mean) + f" | {change[0]:+.4f} / {change[2]:+.4f} | "
            f"{len(up)} / {len(down)}: " + ", ".join(up + down) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--names", nargs="+", required=True, help="Tuning fields to scale")
    parser.add_argument("--factors", nargs="+", type=float, default=[0.75, 1.33])
    parser.add_argument("--only", nargs="*", default=[], help="names containing any of these")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="decoded true layers")
    parser.add_argument("--json", type=Path, help="write every run's per-file scores here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args()
    paths = [p for p, kind, _ in documents(args.folders, args.only) if kind == "design"]
    if not paths:
        raise SystemExit("no designs in " + ", ".join(map(str, args.folders)))
    tasks = [("", 1.0, paths, args.cache)]
    for name in args.names:
        _known(name)  # before any run
        tasks += [(name, factor, paths, args.cache) for factor in args.factors]
    with ProcessPoolExecutor(args.jobs) as pool:
        done = list(pool.map(run, tasks))
    base, runs = done[0][3], done[1:]
    report = table(base, runs)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")
    if args.json:
        args.json.write_text(json.dumps(
            {"unchanged": base, "runs": [{"name": n, "factor": f, "value": v, "scores": s}
                                         for n, f, v, s in runs]}, indent=1))


if __name__ == "__main__":
    main()
