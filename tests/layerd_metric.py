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

Layers are held as :class:`Patch` windows of the canvas (a box of pixels and one colour
outside it), so real documents of tens of layers at several megapixels fit in memory; the
scores are those of the full-canvas definition above.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Layers = list[np.ndarray]
#: (y0, y1, x0, x1), end exclusive.
Box = tuple[int, int, int, int]


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


def _bbox(mask: np.ndarray) -> Box | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _shift(box: Box | None, dy: int, dx: int) -> Box | None:
    return None if box is None else (box[0] + dy, box[1] + dy, box[2] + dx, box[3] + dx)


def _meet(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return None
    box = (max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] < box[1] and box[2] < box[3] else None


def _join(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


class Patch:
    """One full-canvas layer stored as the box where anything happens and one outside colour.

    ``pixels`` (float32 RGBA) cover ``box``; everywhere else the layer is ``rest`` (RGB) at
    alpha 0. ``key`` names the run of original layers it merges, so scores can be cached.
    """

    def __init__(self, pixels: np.ndarray, box: Box | None, rest: np.ndarray,
                 key: tuple[int, int] = (0, 0)) -> None:
        self.pixels, self.box, self.rest, self.key = pixels, box, rest, key
        self.alpha_box = None if box is None else _shift(_bbox(pixels[..., 3] > 0), box[0],
                                                         box[2])
        self.alpha_sum = float(pixels[..., 3].sum(dtype=np.float64)) if box is not None else 0.0

    @classmethod
    def from_canvas(cls, layer: np.ndarray) -> Patch:
        """The exact patch of a full-canvas float RGBA layer."""
        alpha = layer[..., 3]
        clear = np.argwhere(alpha <= 0)
        rest = layer[tuple(clear[0])][:3].astype(np.float32) if len(clear) else np.zeros(3,
                                                                                      np.float32)
        box = _bbox((alpha > 0) | (layer[..., :3] != rest).any(-1))
        if box is None:
            return cls(np.zeros((0, 0, 4), np.float32), None, rest)
        y0, y1, x0, x1 = box
        return cls(layer[y0:y1, x0:x1].astype(np.float32), box, rest)

    @classmethod
    def from_crop(cls, rgba8: np.ndarray, x: int, y: int, height: int, width: int) -> Patch:
        """A uint8 RGBA crop placed at (x, y) on a transparent black canvas (a PSD layer)."""
        h, w = rgba8.shape[:2]
        box = (max(y, 0), min(y + h, height), max(x, 0), min(x + w, width))
        if box[0] >= box[1] or box[2] >= box[3]:
            return cls(np.zeros((0, 0, 4), np.float32), None, np.zeros(3, np.float32))
        crop = rgba8[box[0] - y : box[1] - y, box[2] - x : box[3] - x]
        return cls(crop.astype(np.float32) / 255.0, box, np.zeros(3, np.float32))

    def window(self, box: Box) -> np.ndarray:
        """The layer's float32 RGBA over ``box``."""
        y0, y1, x0, x1 = box
        out = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
        out[..., :3] = self.rest
        inside = _meet(self.box, box)
        if inside is not None and self.box is not None:
            a, b = self.box, inside
            out[b[0] - y0 : b[1] - y0, b[2] - x0 : b[3] - x0] = self.pixels[
                b[0] - a[0] : b[1] - a[0], b[2] - a[2] : b[3] - a[2]
            ]
        return out

    def canvas(self, height: int, width: int) -> np.ndarray:
        return self.window((0, height, 0, width)).astype(np.float64)


def over_patch(bottom: Patch, top: Patch) -> Patch:
    """``top`` over ``bottom``; outside both boxes both are clear and the top's colour stays."""
    key = (bottom.key[0], top.key[1])
    box = _join(bottom.box, top.box)
    if box is None:
        return Patch(top.pixels, None, top.rest, key)
    return Patch(over(bottom.window(box), top.window(box)), box, top.rest, key)


def _overlaps(a: Patch, b: Patch) -> bool:
    meet = _meet(a.alpha_box, b.alpha_box)
    if meet is None:
        return False
    return bool(((a.window(meet)[..., 3] > 0) & (b.window(meet)[..., 3] > 0)).any())


def patch_score(pred: Patch, true: Patch) -> tuple[float, float]:
    """(RGB L1, alpha soft IoU) of one predicted layer against one true layer."""
    if pred.alpha_box is None and true.alpha_box is None:
        return 0.0, 1.0
    meet = _meet(pred.alpha_box, true.alpha_box)
    inter = 0.0
    if meet is not None:
        inter = float(np.minimum(pred.window(meet)[..., 3], true.window(meet)[..., 3])
                      .sum(dtype=np.float64))
    union = pred.alpha_sum + true.alpha_sum - inter
    iou = inter / union if union > 0 else 1.0
    l1 = 0.0
    if true.alpha_box is not None:
        p, g = pred.window(true.alpha_box), true.window(true.alpha_box)
        seen = g[..., 3] > 0
        l1 = float(np.abs(p[..., :3][seen] - g[..., :3][seen]).mean(dtype=np.float64))
    return l1, min(iou, 1.0)


def pair_score(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(RGB L1, alpha soft IoU) of two full-canvas float RGBA layers."""
    return patch_score(Patch.from_canvas(pred), Patch.from_canvas(true))


def group_patches(layers: list[Patch]) -> list[Patch]:
    """Group layers by occlusion depth, as LayerD does, and merge each group (back to front).

    Repeatedly, every remaining layer that no remaining layer above it overlaps is "on top";
    those form one group and are set aside. Layers in one group do not overlap each other,
    so their relative order is arbitrary and must not count, even when they are not
    neighbours in the stack.
    """
    n = len(layers)
    hit = [[j for j in range(i + 1, n) if _overlaps(layers[i], layers[j])] for i in range(n)]
    remaining = set(range(n))
    groups: list[list[int]] = []
    while remaining:
        top = sorted(i for i in remaining if not any(j in remaining for j in hit[i]))
        groups.append(top)
        remaining -= set(top)
    out: list[Patch] = []
    for position, group in enumerate(groups[::-1]):
        merged = layers[group[0]]
        for index in group[1:]:
            merged = over_patch(merged, layers[index])
        out.append(Patch(merged.pixels, merged.box, merged.rest, (position, position)))
    return out


def group_unordered(layers: Layers) -> Layers:
    """:func:`group_patches` on full-canvas layers."""
    if not layers:
        return []
    h, w = layers[0].shape[:2]
    return [p.canvas(h, w) for p in group_patches([Patch.from_canvas(x) for x in layers])]


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
    """Caches pair scores by the runs of original layers each side's layer merges."""

    def __init__(self) -> None:
        self._cache: dict[tuple[tuple[int, int], tuple[int, int]], tuple[float, float]] = {}

    def score(self, pred: list[Patch], true: list[Patch]) -> Score:
        l1 = np.zeros((len(pred), len(true)))
        iou = np.zeros_like(l1)
        for i, p in enumerate(pred):
            for j, g in enumerate(true):
                key = (p.key, g.key)
                if key not in self._cache:
                    self._cache[key] = patch_score(p, g)
                l1[i, j], iou[i, j] = self._cache[key]
        path = dtw_align((l1 + 1.0 - iou) / 2.0)
        return Score(float(np.mean([l1[p] for p in path])), float(np.mean([iou[p] for p in path])))


def _merge_at(layers: list[Patch], k: int) -> list[Patch]:
    return layers[:k] + [over_patch(layers[k], layers[k + 1])] + layers[k + 2 :]


def with_white_under(true: list[Patch], height: int, width: int) -> list[Patch]:
    """The true layers as the metric scores them: with a white layer under them when the
    bottom one is not opaque over the whole canvas (the reference renders on white)."""
    canvas = (0, height, 0, width)
    if true and not (true[0].box == canvas and bool((true[0].pixels[..., 3] >= 1 - 1e-6).all())):
        white = np.ones((height, width, 4), np.float32)
        return [Patch(white, canvas, np.ones(3, np.float32)), *true]
    return list(true)


def depth_levels(layers: list[Patch]) -> int:
    """How many occlusion-depth groups the metric sees in a stack: layers that overlap
    nothing above them share a level, so a stack of 20 layers side by side on a background
    is 2 levels. A prediction with fewer levels than its truth cannot align one to one."""
    return len(group_patches(layers))


@dataclass(frozen=True)
class TrueLevel:
    """Where one depth level of the truth went in a prediction (a diagnosis, not a score)."""

    area: float  # its alpha, as a share of the canvas
    visible: float  # the share of its alpha that the levels above leave to be seen
    #: Per predicted level (bottom first), the share of its visible alpha found there
    #: (weighted by that level's visible alpha): which predicted level holds what is seen.
    found_in: tuple[float, ...]


def _visible_alphas(levels: list[Patch], height: int, width: int) -> list[np.ndarray]:
    """Each level's alpha as seen through the levels above it (full canvas, float32)."""
    out: list[np.ndarray] = []
    for level, seen in zip(levels, _seen_alphas(levels, height, width), strict=True):
        full = np.zeros((height, width), np.float32)
        if level.box is not None:
            y0, y1, x0, x1 = level.box
            full[y0:y1, x0:x1] = seen
        out.append(full)
    return out


def level_map(pred: list[Patch], true: list[Patch], height: int, width: int) -> list[TrueLevel]:
    """Per true depth level (bottom first, over white as the metric scores it): its size,
    how much of it is seen, and which predicted levels hold what is seen. A true level
    seen mostly in the predicted bottom level is content left in the background; the true
    bottom level seen in upper predicted levels is background lifted out."""
    true_levels = group_patches(with_white_under(true, height, width))
    seen_true = _visible_alphas(true_levels, height, width)
    seen_pred = _visible_alphas(group_patches(pred), height, width)
    out = []
    for level, seen in zip(true_levels, seen_true, strict=True):
        total = float(level.alpha_sum)
        shown = float(seen.sum(dtype=np.float64))
        found = tuple(float((seen * p).sum(dtype=np.float64)) / shown if shown > 0 else 0.0
                      for p in seen_pred)
        out.append(TrueLevel(total / (height * width), shown / total if total > 0 else 0.0,
                             found))
    return out


def pixel_ceiling(true: list[Patch], height: int, width: int,
                  step: float = 8 / 255) -> list[Patch]:
    """What a decomposer that sees only the picture could return at best, without guessing:
    the truth's bottom layer whole (its hidden parts filled perfectly), and each layer above
    cut to the pixels where it is seen and changes the picture under it by more than
    ``step`` (any channel, over white as the metric renders). Hidden parts of upper layers,
    and layers the colour of what is under them, are left out: no picture shows them. Its
    score against the truth bounds what finding the visible elements alone can reach."""
    seen = _seen_alphas(true, height, width)
    below = np.ones((height, width, 4), np.float32)
    out: list[Patch] = []
    for index, (layer, alpha) in enumerate(zip(true, seen, strict=True)):
        if layer.box is None:
            continue
        y0, y1, x0, x1 = layer.box
        before = below[y0:y1, x0:x1]
        after = over(before, layer.pixels)
        if index == 0:
            out.append(layer)
        else:
            changed = np.abs(after - before)[..., :3].max(axis=-1) > step
            pixels = layer.pixels.copy()
            pixels[..., 3] = np.where(changed & (alpha >= 1 / 255), alpha, 0.0)
            if pixels[..., 3].any():
                out.append(Patch(pixels, layer.box, layer.rest))
        below[y0:y1, x0:x1] = after
    return out


def _seen_alphas(layers: list[Patch], height: int, width: int) -> list[np.ndarray]:
    """Each layer's alpha over its own box as the layers above it leave it to be seen."""
    cover = np.zeros((height, width), np.float32)
    out: list[np.ndarray] = []
    for layer in reversed(layers):
        if layer.box is None:
            out.append(np.zeros((0, 0), np.float32))
            continue
        y0, y1, x0, x1 = layer.box
        alpha = layer.pixels[..., 3]
        out.append(alpha * (1.0 - cover[y0:y1, x0:x1]))
        cover[y0:y1, x0:x1] += alpha * (1.0 - cover[y0:y1, x0:x1])
    return out[::-1]


def evaluate_patches(pred: list[Patch], true: list[Patch], height: int, width: int,
                     max_merges: int = 5) -> list[Score]:
    """Scores at 0..max_merges greedy merges (index = number of merges allowed) of layers on
    a ``height`` x ``width`` canvas."""
    pred, true = group_patches(pred), group_patches(with_white_under(true, height, width))
    matcher = _Matcher()
    best = matcher.score(pred, true)
    scores = [best]
    for _ in range(max_merges):
        # Candidates are built one at a time and only the best is kept: a merged layer can
        # be as big as the canvas.
        choice: tuple[Score, int, int] | None = None
        for side, layers in ((0, pred), (1, true)):
            for k in range(len(layers) - 1):
                merged = _merge_at(layers, k)
                cand = matcher.score(merged, true) if side == 0 else matcher.score(pred, merged)
                if choice is None or cand.cost < choice[0].cost:
                    choice = (cand, side, k)
        if choice is not None and choice[0].cost < best.cost:
            best, side, k = choice
            if side == 0:
                pred = _merge_at(pred, k)
            else:
                true = _merge_at(true, k)
        scores.append(best)
    return scores


def evaluate(pred: Layers, true: Layers, max_merges: int = 5) -> list[Score]:
    """:func:`evaluate_patches` on full-canvas float RGBA layers."""
    height, width = (true or pred)[0].shape[:2]
    return evaluate_patches([Patch.from_canvas(x) for x in pred],
                            [Patch.from_canvas(x) for x in true], height, width, max_merges)


def open_psd(path: Path):  # -> psd_tools.PSDImage
    """A ``.psd`` or gzip-compressed ``.psd.gz`` document."""
    from psd_tools import PSDImage

    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return PSDImage.open(io.BytesIO(data))


def read_psd_crops(path: Path) -> tuple[list[tuple[np.ndarray, int, int]], int, int]:
    """True layers of a PSD as (uint8 RGBA crop, x, y), bottom first, and the canvas size.

    Groups and hidden layers (hidden parent groups included) are skipped; each visible leaf
    is ``layer.composite()`` placed at ``(layer.left, layer.top)``; layers that render
    nothing are left out."""
    psd = open_psd(path)
    crops = []
    for layer in psd.descendants():
        if layer.is_group() or not layer.is_visible():
            continue
        image = layer.composite()
        if image is None:
            continue
        pixels = np.asarray(image.convert("RGBA"), np.uint8)
        if pixels[..., 3].any():
            crops.append((pixels, int(layer.left), int(layer.top)))
    return crops, psd.height, psd.width


def composite(layers: list[Patch], height: int, width: int) -> np.ndarray:
    """The over-composite of patches on a transparent canvas, as uint8 RGBA."""
    total = np.zeros((height, width, 4), np.float32)
    for layer in layers:
        if layer.box is not None:
            y0, y1, x0, x1 = layer.box
            total[y0:y1, x0:x1] = over(total[y0:y1, x0:x1], layer.pixels)
    return np.clip(np.rint(total * 255.0), 0, 255).astype(np.uint8)


def read_psd_layers(path: Path) -> tuple[Layers, np.ndarray]:
    """True layers of a PSD as float RGBA canvases (bottom first), and their over-composite."""
    crops, height, width = read_psd_crops(path)
    layers: Layers = []
    total = np.zeros((height, width, 4), np.float64)
    for pixels, x, y in crops:
        layer = Patch.from_crop(pixels, x, y, height, width).canvas(height, width)
        layers.append(layer)
        total = over(total, layer)
    return layers, total
