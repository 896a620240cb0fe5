"""The classic engine's quality table: LayerD scores per PSD and on synthetic designs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from layerd_metric import Score, evaluate, read_psd_layers
from synthetic import design

from layerbridge.engines.classic.decompose import decompose

PSDS = Path(__file__).parent / "data" / "psd"
#: Overlapping same-colour strokes: ambiguous by nature, reported but not held to the bar.
AMBIGUOUS = {"agpsd-rle-fail.psd"}
MERGES = 5


def _predict(pixels: np.ndarray) -> list[np.ndarray]:
    return [np.rint(layer * 255) / 255 for _, layer in decompose(pixels)]


@cache
def psd_scores(name: str) -> tuple[list[Score], int, int]:
    """(scores at 0..MERGES merges, predicted layer count, true layer count)."""
    true, total = read_psd_layers(PSDS / name)
    pred = _predict(np.clip(np.rint(total * 255), 0, 255).astype(np.uint8))
    return evaluate(pred, true, MERGES), len(pred), len(true)


@cache
def synthetic_scores(seed: int) -> list[Score]:
    true, pixels = design(seed, 480, 360)
    return evaluate(_predict(pixels), [t / 255.0 for t in true], 0)


def psd_names() -> list[str]:
    return sorted(p.name for p in PSDS.glob("*.psd"))


def table(seeds: range = range(6)) -> str:
    """Markdown table: per file L1 / IoU at 0..MERGES merges, then synthetic means."""
    head = " | ".join(f"{k} merges" for k in range(MERGES + 1))
    lines = [f"| file | layers (pred/true) | {head} |", "|---|---|" + "---|" * (MERGES + 1)]
    for name in psd_names():
        scores, npred, ntrue = psd_scores(name)
        cells = " | ".join(f"{s.l1:.3f} / {s.iou:.3f}" for s in scores)
        lines.append(f"| {name} | {npred}/{ntrue} | {cells} |")
    syn = [synthetic_scores(s)[0] for s in seeds]
    lines.append(f"\nsynthetic designs (seeds {seeds.start}..{seeds.stop - 1}, 480x360): "
                 f"mean L1 {np.mean([s.l1 for s in syn]):.4f}, "
                 f"mean IoU {np.mean([s.iou for s in syn]):.3f} at 0 merges")
    return "\n".join(lines)
