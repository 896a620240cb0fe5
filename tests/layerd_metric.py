"""The LayerD decomposition metric (CyberAgent LayerD protocol), written for our tests.

Per pair of layers (float RGBA in [0, 1], full canvas; P predicted, G true):

- RGB L1: mean over pixels with ``a_G > 0`` of the channel-mean ``|P - G|``. The colour of
  predicted pixels with alpha 0 counts, so engines must keep a sensible colour there.
- alpha soft IoU: ``sum min(a_P, a_G) / sum max(a_P, a_G)``.
- cost: ``(L1 + 1 - IoU) / 2``.

Sequence protocol: on both sides, layers are grouped by occlusion depth (repeatedly, every
layer that nothing above it overlaps joins the current top group) and each group is merged
(the order inside a group is arbitrary, so it must not count); the two
sequences are aligned by order-aware DTW on the cost; L1 and IoU are averaged over the aligned
pairs. "k merges" then allows up to k greedy merges of two adjacent layers on either side,
each time the one that lowers the mean cost most. If the true bottom layer is not opaque a
white layer is put under the truth (the reference renders on white).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

Layers = list[np.ndarray]


@dataclass(frozen=True)
class Score:
    """The aligned mean RGB L1 and alpha soft IoU of one prediction against one truth."""

    l1: float
    iou: float

    @property
    def cost(self) -> float:
        return (self.l1 + 1.0 - self.iou) / 2.0


def over(bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """``top`` over ``bottom`` for float RGBA, kept independent of the product's code."""
    at, ab = top[..., 3:4], bottom[..., 3:4]
    a = at + ab * (1.0 - at)
    pre = top[..., :3] * at + bottom[..., :3] * ab * (1.0 - at)
    rgb = np.divide(pre, a, out=np.zeros_like(pre), where=a > 0)
    # Where both are transparent keep the top's colour, so merging keeps sensible colour.
    rgb = np.where(a > 0, rgb, top[..., :3])
    return np.concatenate([rgb, a], axis=-1)


def _bbox(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def pair_score(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(RGB L1, alpha soft IoU) of one predicted layer against one true layer."""
    boxes = [b for b in (_bbox(pred[..., 3] > 0), _bbox(true[..., 3] > 0)) if b is not None]
    if not boxes:
        return 0.0, 1.0
    y0, y1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
    x0, x1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
    p, g = pred[y0:y1, x0:x1], true[y0:y1, x0:x1]
    ap, ag = p[..., 3], g[..., 3]
    union = np.maximum(ap, ag).sum()
    iou = float(np.minimum(ap, ag).sum() / union) if union > 0 else 1.0
    seen = ag > 0
    l1 = float(np.abs(p[..., :3][seen] - g[..., :3][seen]).mean()) if seen.any() else 0.0
    return l1, iou


def group_unordered(layers: Layers) -> Layers:
    """Group layers by occlusion depth, as LayerD does, and merge each group (back to front).

    Repeatedly, every remaining layer that no remaining layer above it overlaps is "on top";
    those form one group and are set aside. Layers in one group do not overlap each other,
    so their relative order is arbitrary and must not count, even when they are not
    neighbours in the stack.
    """
    masks = [layer[..., 3] > 0 for layer in layers]
    remaining = list(range(len(layers)))
    groups: list[list[int]] = []
    while remaining:
        above = np.zeros(masks[0].shape, bool) if masks else None
        top: list[int] = []
        for index in reversed(remaining):
            if not (masks[index] & above).any():
                top.append(index)
            above |= masks[index]
        groups.append(top[::-1])
        remaining = [i for i in remaining if i not in top]
    out: Layers = []
    for group in groups[::-1]:
        merged = layers[group[0]].copy()
        for index in group[1:]:
            merged = over(merged, layers[index])
        out.append(merged)
    return out


def dtw_align(cost: np.ndarray) -> list[tuple[int, int]]:
    """Monotone alignment (steps right, down, diagonal) from (0, 0) to (m-1, n-1)."""
    m, n = cost.shape
    acc = np.full((m + 1, n + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    path, i, j = [], m, n
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        steps = {(i - 1, j - 1): acc[i - 1, j - 1], (i - 1, j): acc[i - 1, j]}
        steps[(i, j - 1)] = acc[i, j - 1]
        i, j = min(steps, key=steps.__getitem__)
    return path[::-1]


class _Matcher:
    """Caches pair scores by layer identity, so greedy merging only scores new layers."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[float, float]] = {}
        self._keep: list[np.ndarray] = []

    def score(self, pred: Layers, true: Layers) -> Score:
        l1 = np.zeros((len(pred), len(true)))
        iou = np.zeros_like(l1)
        for i, p in enumerate(pred):
            for j, g in enumerate(true):
                key = (id(p), id(g))
                if key not in self._cache:
                    self._cache[key] = pair_score(p, g)
                    self._keep += [p, g]  # keep ids alive so they are never reused
                l1[i, j], iou[i, j] = self._cache[key]
        path = dtw_align((l1 + 1.0 - iou) / 2.0)
        return Score(float(np.mean([l1[p] for p in path])), float(np.mean([iou[p] for p in path])))


def _merge_at(layers: Layers, k: int) -> Layers:
    return layers[:k] + [over(layers[k], layers[k + 1])] + layers[k + 2 :]


def evaluate(pred: Layers, true: Layers, max_merges: int = 5) -> list[Score]:
    """Scores at 0..max_merges greedy merges (index = number of merges allowed)."""
    true = list(true)
    if true and not (true[0][..., 3] >= 1.0 - 1e-6).all():
        white = np.ones_like(true[0])
        true = [white, *true]
    pred, true = group_unordered(pred), group_unordered(true)
    matcher = _Matcher()
    best = matcher.score(pred, true)
    scores = [best]
    for _ in range(max_merges):
        options = [(_merge_at(pred, k), true) for k in range(len(pred) - 1)]
        options += [(pred, _merge_at(true, k)) for k in range(len(true) - 1)]
        tried = [(matcher.score(p, t), p, t) for p, t in options]
        if tried:
            cand, p, t = min(tried, key=lambda item: item[0].cost)
            if cand.cost < best.cost:
                best, pred, true = cand, p, t
        scores.append(best)
    return scores


def read_psd_layers(path: Path) -> tuple[Layers, np.ndarray]:
    """True layers of a PSD as float RGBA canvases (bottom first), and their over-composite."""
    from psd_tools import PSDImage

    psd = PSDImage.open(path)
    width, height = psd.width, psd.height
    layers: Layers = []
    for layer in psd.descendants():
        if layer.is_group() or not layer.is_visible():
            continue
        image = layer.composite()
        if image is None:
            continue
        canvas = np.zeros((height, width, 4), np.float64)
        pixels = np.asarray(image.convert("RGBA"), np.float64) / 255.0
        _paste(canvas, pixels, layer.left, layer.top)
        layers.append(canvas)
    total = layers[0].copy()
    for layer in layers[1:]:
        total = over(total, layer)
    return layers, total


def _paste(canvas: np.ndarray, pixels: np.ndarray, x: int, y: int) -> None:
    h, w = pixels.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x0 < x1 and y0 < y1:
        canvas[y0:y1, x0:x1] = pixels[y0 - y : y1 - y, x0 - x : x1 - x]
