"""Whole-stack steps: the input's own transparency, and fewer layers on request.

The peel works on opaque colour. An input with alpha ``A`` is decomposed as if opaque and
its transparency is then pushed into the stack from the top: each layer's alpha becomes
``a * T`` where ``T`` is the opacity still to explain at that depth; colours stay as they
are and the over-composite of the stack is ``(I, A)``. For opaque input this step only
re-derives the bottom layer from the rounded upper layers, which keeps the sum exact.
"""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.hulls import boxes_meet
from layerbridge.engines.classic.regions import Element, union

Box = tuple[int, int, int, int]


def apply_input_alpha(layers: list[tuple[Box, np.ndarray]], rgba: np.ndarray) -> None:
    """Make float RGBA ``layers`` (bottom first, bottom opaque and full-frame; each given
    over its box y0, y1, x0, x1) composite to uint8 ``rgba``, in place.

    Upper layers keep their colour and get alpha ``a * T`` (rounded to 8 bits); the exact
    remainder ``(P - a F) / (1 - a)`` of the premultiplied target is carried down, and the
    bottom layer takes what is left, so rounding never accumulates. Each layer is rewritten
    only over its own alpha's box (outside it nothing changes).
    """
    alpha = rgba[..., 3].astype(np.float64) / 255.0
    pre = rgba[..., :3] / 255.0 * alpha[..., None]
    # Under a fully opaque layer nothing below shows: the lower layers keep their own alpha
    # and colour there (an occluded shape stays whole) instead of being cut to zero.
    hidden = np.zeros(alpha.shape, bool)
    for (y0, _, x0, _), layer in reversed(layers[1:]):
        box = _alpha_box(layer[..., 3])
        if box is not None:
            ys, xs = box
            doc = slice(ys.start + y0, ys.stop + y0), slice(xs.start + x0, xs.stop + x0)
            _carry_down(layer[box], alpha[doc], pre[doc], hidden[doc])
    base = layers[0][1]
    color = np.divide(pre, alpha[..., None], out=base[..., :3].copy(), where=alpha[..., None] > 0)
    base[..., :3] = np.where(hidden[..., None], base[..., :3], np.clip(color, 0.0, 1.0))
    base[..., 3] = np.where(hidden, 1.0, alpha)


def _alpha_box(alpha: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero((alpha > 0).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((alpha[rows[0]:rows[-1] + 1] > 0).any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _carry_down(layer: np.ndarray, alpha: np.ndarray, pre: np.ndarray, hidden: np.ndarray
                ) -> None:
    """One layer's step, in place on views of one box: scale its alpha by the opacity left
    to explain, and leave in ``alpha`` and ``pre`` what the layers under it must explain."""
    a = np.rint(layer[..., 3] * alpha * 255.0) / 255.0
    keep = 1.0 - a
    seen = keep > 1e-9
    safe = np.maximum(keep, 1e-12)[..., None]
    below = np.where(seen[..., None], (pre - a[..., None] * layer[..., :3]) / safe,
                     layer[..., :3])
    pre[:] = np.clip(below, 0.0, None)
    alpha[:] = np.clip(np.where(seen, (alpha - a) / safe[..., 0], 1.0), 0.0, 1.0)
    hidden |= ~seen
    layer[..., 3] = a


def merge_to_count(elements: list[Element], count: int) -> list[Element]:
    """Merge elements, the most alike pair first, until ``count`` remain.

    Alike: of one kind (text with text), of near colours, small together (the big, useful
    layers - panels, photos, titles - stay apart) and near each other. Two elements may be
    merged when nothing between them in z-order overlaps the one that moves to the other,
    so what is above what never changes.
    """
    elements = list(elements)
    while len(elements) > max(count, 0) and len(elements) >= 2:
        best: tuple[float, int, int, int] | None = None  # cost, lower, upper, where
        for i in range(len(elements) - 1):
            for j in range(i + 1, min(i + 1 + _MERGE_REACH, len(elements))):
                where = _slide(elements, i, j)
                if where is None:
                    continue
                cost = _merge_cost(elements[i], elements[j])
                if best is None or cost < best[0]:
                    best = (cost, i, j, where)
        assert best is not None  # neighbours in z-order can always merge
        _, i, j, where = best
        merged = _merged(elements[i], elements[j])
        rest = [e for k, e in enumerate(elements) if k not in (i, j)]
        rest.insert(where if where == i else where - 1, merged)
        elements = rest
    if count <= 0:
        return []
    return elements


#: How far apart in z-order (elements) two merged elements may lie.
_MERGE_REACH = 8
#: Cost factor for merging elements of two kinds, and per unit of colour difference.
_OTHER_KIND = 4.0
_COLOR_WEIGHT = 3.0


def _slide(elements: list[Element], i: int, j: int) -> int | None:
    """Where the merge of ``i`` and ``j`` (i < j) may sit: at ``i`` when ``j`` can slide
    down past everything between them, at ``j`` when ``i`` can slide up; else None."""
    between = elements[i + 1 : j]
    if not any(boxes_meet(e.box, elements[j].box) for e in between):
        return i
    if not any(boxes_meet(e.box, elements[i].box) for e in between):
        return j
    return None


def _merge_cost(a: Element, b: Element) -> float:
    cost = float(a.area + b.area)
    if a.kind != b.kind:
        cost *= _OTHER_KIND
    if a.color is not None and b.color is not None:
        cost *= 1.0 + _COLOR_WEIGHT * float(np.abs(a.color - b.color).max())
    else:
        cost *= 1.0 + _COLOR_WEIGHT
    y0, y1 = min(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    x0, x1 = min(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    # Far apart, their joint box is mostly neither: the merge spans the page.
    return cost * (y1 - y0) * (x1 - x0) / max(_box_area(a.box) + _box_area(b.box), 1)


def _box_area(box: Box) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


def _merged(a: Element, b: Element) -> Element:
    """One element of both; of their kind when they share it, else a group, and peeled by
    mask (no colour) when their colours differ."""
    merged = union(a, b)
    if a.kind != b.kind:
        merged.kind = "group"
    if a.color is None or b.color is None or np.abs(a.color - b.color).max() > 0.02:
        merged.color = None  # several colours: peel by mask, not by unmixing
    return merged
