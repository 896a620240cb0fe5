"""Whole-stack steps: the input's own transparency, and fewer layers on request.

The peel works on opaque colour. An input with alpha ``A`` is decomposed as if opaque and
its transparency is then pushed into the stack from the top: each layer's alpha becomes
``a * T`` where ``T`` is the transparency still to explain at that depth, and
``T_below = T (1 - a) / (1 - a T)``. Colours stay as they are and the over-composite of
the stack is exactly ``(I, A)``.
"""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.regions import Element, union


def apply_input_alpha(layers: list[np.ndarray], alpha: np.ndarray) -> list[np.ndarray]:
    """Scale float RGBA ``layers`` (bottom first, bottom opaque) so they composite to alpha."""
    target = alpha.astype(np.float64)
    out = [layer.copy() for layer in layers]
    for layer in reversed(out):
        a = layer[..., 3]
        scaled = a * target
        denom = 1.0 - scaled
        below = np.divide(target * (1.0 - a), denom, out=np.ones_like(a), where=denom > 1e-9)
        layer[..., 3] = scaled
        target = np.clip(below, 0.0, 1.0)
    return out


def merge_to_count(elements: list[Element], count: int) -> list[Element]:
    """Merge z-adjacent elements (the pair with the smallest joint area first) to ``count``.

    Merging neighbours in z-order never changes what is above what, and merging the
    smallest pair first keeps the big, useful layers (panels, photos, titles) apart.
    """
    elements = list(elements)
    while len(elements) > max(count, 0) and len(elements) >= 2:
        sizes = [elements[i].area + elements[i + 1].area for i in range(len(elements) - 1)]
        k = int(np.argmin(sizes))
        a, b = elements[k], elements[k + 1]
        merged = union(a, b)
        if a.color is None or b.color is None or np.abs(a.color - b.color).max() > 0.02:
            merged.color = None  # several colours: peel by mask, not by unmixing
        elements[k : k + 2] = [merged]
    if count <= 0:
        return []
    return elements
