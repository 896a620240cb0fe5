"""z-order: which element lies above which, from how their convex hulls overlap.

An occluded element loses pixels where the upper one covers it, but its convex hull still
spans them: so A is above B when more of A lies inside B's hull than of B inside A's (less
B's holes where the page shows: a pictogram in a prohibition sign's ring is not under the
ring, while the sign's bar across it lies in the pictogram's hull). Text
goes above the shapes it touches. Of two shapes that only touch, one whose outline is a
whole ellipse or polygon hides nothing, so the other, cut by it, is the lower one. The
relation is sorted topologically, bigger ones lower.
"""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.amodal import hidden_under
from layerbridge.engines.classic.hulls import (
    contact_depths,
    contact_spans,
    fraction_inside,
    hull_mask,
    solid_hull,
)
from layerbridge.engines.classic.regions import Element, owner_map
from layerbridge.engines.classic.text import text_over_shape
from layerbridge.engines.classic.tuning import TUNING


def z_order(elements: list[Element], frame: tuple[int, int] | None = None,
            page: np.ndarray | None = None) -> list[Element]:
    """Return ``elements`` bottom first (``frame``: the image's height and width, which
    lets touching shapes be completed under each other; ``page``: the full-frame pixels of
    the background, which show through an element's see-through holes)."""
    n = len(elements)
    hulls = [hull_mask(e) for e in elements]
    if page is not None:
        hulls = [solid_hull(e, hull, page) for e, hull in zip(elements, hulls, strict=True)]
    above = np.zeros((n, n), bool)  # above[i, j]: i lies above j
    owner = None  # made when first needed: most pairs never need it
    for i in range(n):
        for j in range(i + 1, n):
            a, b = elements[i], elements[j]
            if not a.box.grow(TUNING.touch_reach).intersects(b.box):
                continue
            fa, fb = fraction_inside(a, b, hulls[j]), fraction_inside(b, a, hulls[i])
            if max(fa, fb) < TUNING.min_overlap:
                # Touching, neither in the other's hull: the one whose outline is bitten
                # (runs inside its own hull where they meet) is the lower one.
                depths = contact_depths(a, b, hulls[i], hulls[j])
                if depths is None:
                    continue
                if abs(depths[0] - depths[1]) >= TUNING.min_bite:
                    fa, fb = float(depths[1] > depths[0]), float(depths[0] > depths[1])
                else:
                    if owner is None and frame is not None:
                        owner = owner_map(elements, frame)
                    lower = _lower_of_touching(a, b, owner, i, j)
                    if lower is None:
                        continue
                    fa, fb = float(lower == 1), float(lower == 0)
            text_first = text_over_shape(a, b)
            if text_first is not None:
                above[i, j], above[j, i] = text_first
            elif fa != fb:
                above[i, j], above[j, i] = fa > fb, fb > fa
    return [elements[i] for i in _topological(above, [e.area for e in elements])]


def _lower_of_touching(a: Element, b: Element, owner: np.ndarray | None, ia: int, ib: int
                       ) -> int | None:
    """0 if ``a`` is the lower of two shapes whose outlines are both convex where they
    touch, 1 if ``b`` is, None if unknown."""
    hidden = _hidden_parts(a, b, owner, ia, ib) if owner is not None else None
    if hidden is not None:
        return int(hidden[1] > hidden[0])
    # The one cut from side to side is the lower one.
    spans = contact_spans(a, b)
    if spans is None or abs(spans[0] - spans[1]) < TUNING.min_span:
        return None
    return int(spans[1] > spans[0])


def _hidden_parts(a: Element, b: Element, owner: np.ndarray, ia: int, ib: int
                  ) -> tuple[int, int] | None:
    """Pixels of each one's whole shape under the other, when that tells which is lower:
    one of them fitted from its own outline, and one hiding clearly more than the other.
    ``owner`` holds, per pixel, 1 + the index of the element there (0: none)."""
    if a.kind != "shape" or b.kind != "shape":
        return None
    ha = hidden_under(a, owner == ib + 1, (owner > 0) & (owner != ia + 1))
    hb = hidden_under(b, owner == ia + 1, (owner > 0) & (owner != ib + 1))
    if ha is None or hb is None or "outline" not in (ha[0], hb[0]):
        return None
    low, high = sorted((ha[1], hb[1]))
    if high < TUNING.min_hidden or low * TUNING.hidden_ratio > high:
        return None
    return ha[1], hb[1]


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
