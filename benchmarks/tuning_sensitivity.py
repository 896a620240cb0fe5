"""How sharply the development set's score hangs on each of the classic engine's thresholds,
and on the size its documents are drawn at.

A value tuned on a set of documents sits where the set scores best. On a plateau, nearby
values score the same and the value carries over to documents nobody tuned it on; on a peak
that one or two files set, a document that is not in the set is as likely to fall on either
side. For each threshold named and each factor, this runs the classic engine in this process
with that one value of ``TUNING`` scaled (whole numbers rounded), over every design of the
folders given, and prints the designs' mean alpha soft IoU at 0, 1 and 2 merges against the
run with every value as it is (the same process, first), with the files that move.

``--scales`` asks the same of the documents' size: every design, its true layers resampled
by the factor (smaller: area-averaged, as a document saved at that size is anti-aliased;
larger: pixels repeated), decomposed from their composite and scored against them. A rule
that holds only at the size the set's files happen to have will not hold on documents drawn
at another size.

    python benchmarks/tuning_sensitivity.py ../shared/testdata/psd-dev tests/data/psd \\
        --names max_elements same_color --factors 0.75 1.33 --scales 0.5 --jobs 2

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
from fractions import Fraction
from pathlib import Path

import cv2
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
#: The run name of a resolution run (its factor scales the documents, not a threshold).
RESOLUTION = "resolution"


@contextmanager
def tuned(**values: float | int) -> Iterator[None]:
    """``TUNING`` with these fields set while the block runs. Every stage reads ``TUNING``
    when it runs, so the one frozen instance is changed in place and put back."""
    for name in values:
        _known(name)
    old = {name: getattr(TUNING, name) for name in values}
    try:
        for name, value in values.items():
            object.__setattr__(TUNING, name, value)
        yield
    finally:
        for name, value in old.items():
            object.__setattr__(TUNING, name, value)


@contextmanager
def scaled(name: str, factor: float) -> Iterator[float | int]:
    """``TUNING.name`` times ``factor`` (rounded if a whole number) while the block runs; the
    new value is yielded."""
    _known(name)
    old = getattr(TUNING, name)
    new = round(old * factor) if isinstance(old, int) else old * factor
    with tuned(**{name: new}):
        yield new


def rescaled(layer: Patch, factor: float, height: int, width: int) -> Patch:
    """``layer`` drawn ``factor`` times as large on a ``height`` x ``width`` canvas, rounded to
    8 bits. Smaller, it is area-averaged premultiplied, as a document saved at that size
    holds it; larger, each pixel is repeated (nearest): an interpolated edge spreads past
    the layer, and layers that met edge to edge would overlap, a depth the document does
    not have. The window resampled starts and ends where source and target pixels meet
    (``factor`` as a fraction p/q: every q source pixels), so each layer lands exactly
    where resampling the whole canvas would put it."""
    if layer.box is None:
        return layer
    step = Fraction(factor).limit_denominator(16)
    q = step.denominator
    y0, y1, x0, x1 = layer.box
    # Aligned to q, with q of clear margin.
    wy0, wx0 = (y0 // q - 1) * q, (x0 // q - 1) * q
    wy1, wx1 = (-(-y1 // q) + 1) * q, (-(-x1 // q) + 1) * q
    window = np.zeros((wy1 - wy0, wx1 - wx0, 4), np.float32)
    cover = layer.pixels[..., 3:]
    window[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = np.concatenate(
        [layer.pixels[..., :3] * cover, cover], -1)
    size = (int((wx1 - wx0) * step), int((wy1 - wy0) * step))
    pre = cv2.resize(window, size, interpolation=cv2.INTER_AREA if step < 1 else cv2.INTER_NEAREST)
    alpha = np.clip(pre[..., 3:], 0.0, 1.0)
    rgb = np.divide(pre[..., :3], alpha, out=np.zeros_like(pre[..., :3]), where=alpha > 1e-6)
    rgba8 = np.rint(np.clip(np.concatenate([rgb, alpha], -1), 0, 1) * 255).astype(np.uint8)
    return Patch.from_crop(rgba8, int(wx0 * step), int(wy0 * step), height, width)


def score_designs(paths: list[Path], cache: Path, scale: float = 1.0) -> Scores:
    """Each design decomposed from its own composite, as bench_quality.py feeds the server,
    and scored against its true layers (all drawn ``scale`` times as large)."""
    scores: Scores = {}
    for path in paths:
        true, height, width = truth(path, cache)
        if scale != 1.0:
            height, width = max(4, int(height * scale)), max(4, int(width * scale))
            true = [rescaled(layer, scale, height, width) for layer in true]
        pieces = decompose_pieces(composite(true, height, width), "auto", lambda *_: None)
        # The server sends 8-bit layers: score what a client receives, placed as it is.
        pred = [Patch.from_crop(np.rint(np.clip(p.pixels, 0, 1) * 255).astype(np.uint8),
                                p.box.x0, p.box.y0, height, width) for p in pieces]
        s = evaluate_patches(pred, true, height, width, MERGES)
        scores[path.name] = (s[0].iou, s[1].iou, s[2].iou)
    return scores


def design_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The arguments of a benchmark that scores the designs of folders in this process: which
    designs, at what sizes, how many runs at a time, and where the scores go."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--scales", nargs="+", type=float, default=[],
                        help="also score every design drawn this many times as large")
    parser.add_argument("--only", nargs="*", default=[], help="names containing any of these")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="decoded true layers")
    parser.add_argument("--json", type=Path, help="write every run's per-file scores here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    return parser


def designs(folders: list[Path], only: list[str]) -> list[Path]:
    """The designs (not photos) among the documents of ``folders`` (names with any of
    ``only`` in them, if given)."""
    paths = [p for p, kind, _ in documents(folders, only) if kind == "design"]
    if not paths:
        raise SystemExit("no designs in " + ", ".join(map(str, folders)))
    return paths


def _known(name: str) -> None:
    if name not in {f.name for f in fields(TUNING)}:
        raise SystemExit(f"no threshold named {name!r} in the classic engine's Tuning "
                         "(see server/layerbridge/engines/classic/tuning.py)")


def run(task: tuple[str, float, list[Path], Path]) -> tuple[str, float, float | int, Scores]:
    """One run: (name, factor, the value used, scores); name "" is the unchanged run."""
    name, factor, paths, cache = task
    if name in ("", RESOLUTION):  # the unchanged run is the documents at their own size
        return name, factor, factor, score_designs(paths, cache, factor)
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
        old = 1.0 if name == RESOLUTION else getattr(TUNING, name)
        lines.append(
            f"| {name} x{factor:g} | {old:.4g} -> {value:.4g} | "
            + " / ".join(f"{v:.4f}" for v in mean) + f" | {change[0]:+.4f} / {change[2]:+.4f} | "
            f"{len(up)} / {len(down)}: " + ", ".join(up + down) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = design_arguments(__doc__)
    parser.add_argument("--names", nargs="+", default=[], help="Tuning fields to scale")
    parser.add_argument("--factors", nargs="+", type=float, default=[0.75, 1.33])
    args = parser.parse_args()
    paths = designs(args.folders, args.only)
    if not args.names and not args.scales:
        raise SystemExit("name a threshold (--names) or a resolution (--scales) to vary")
    tasks = [("", 1.0, paths, args.cache)]
    tasks += [(RESOLUTION, scale, paths, args.cache) for scale in args.scales]
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
