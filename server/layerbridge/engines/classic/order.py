"""z-order: which element lies above which, from how their convex hulls overlap.

An occluded element loses pixels where the upper one covers it, but its convex hull still
spans them: so A is above B when more of A lies inside B's hull than of B inside A's. Text
goes above the shapes it touches. The relation is sorted topologically, bigger ones lower.
"""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.hulls import (
    boxes_meet,
    contact_depths,
    contact_spans,
    fraction_inside,
    grow,
    hull_mask,
)
from layerbridge.engines.classic.regions import Element

_MIN_OVERLAP = 0.02
#: Hull depth (pixels) by which one touching outline must out-bite the other.
_MIN_BITE = 1.0
#: Margin by which a contact must span more of one element than of the other.
_MIN_SPAN = 0.2


def z_order(elements: list[Element]) -> list[Element]:
    """Return ``elements`` bottom first."""
    n = len(elements)
    hulls = [hull_mask(e) for e in elements]
    above = np.zeros((n, n), bool)  # above[i, j]: i lies above j
    for i in range(n):
        for j in range(i + 1, n):
            a, b = elements[i], elements[j]
            if not boxes_meet(grow(a.box, 2), b.box):
                continue
            fa, fb = fraction_inside(a, b, hulls[j]), fraction_inside(b, a, hulls[i])
            if max(fa, fb) < _MIN_OVERLAP:
                # Touching, neither in the other's hull: the one whose outline is bitten
                # (runs inside its own hull where they meet) is the lower one.
                depths = contact_depths(a, b, hulls[i], hulls[j])
                if depths is None:
                    continue
                if abs(depths[0] - depths[1]) >= _MIN_BITE:
                    fa, fb = float(depths[1] > depths[0]), float(depths[0] > depths[1])
                else:
                    # Both convex there: the one cut from side to side is the lower one.
                    spans = contact_spans(a, b)
                    if spans is None or abs(spans[0] - spans[1]) < _MIN_SPAN:
                        continue
                    fa, fb = float(spans[1] > spans[0]), float(spans[0] > spans[1])
            if (a.kind == "text") != (b.kind == "text"):
                above[i, j], above[j, i] = a.kind == "text", b.kind == "text"
            elif fa != fb:
                above[i, j], above[j, i] = fa > fb, fb > fa
    return [elements[i] for i in _topological(above, [e.area for e in elements])]


def _topological(above: np.ndarray, areas: list[int]) -> list[int]:
    """Bottom-first order respecting ``above``; ties and cycles go to the bigger element."""
    left = set(range(len(areas)))
    out: list[int] = []
    while left:
        free = [i for i in left if not any(above[i, j] for j in left)]
        pool = free or list(left)
        pick = max(pool, key=lambda i: areas[i])
        out.append(pick)
        left.remove(pick)
    return out
