"""Clipped content: a shape laid inside another and cut off exactly at its outline.

Design tools clip content to a container (a clipping mask, "clip content" on a frame): a
colour block in a card's corner, a band across its top, cut by the card's own edge. Seen
flat, the container has a notch and the content fills it exactly, so that together they
make one clean convex outline again. A shape placed on top without clipping either stays
inside the container (no notch: the container's outline is whole) or runs past its edge
(together they are not convex). The clipped shape belongs to its container's layer.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from layerbridge.engines.classic.hulls import boxes_meet, convex_hull, grow
from layerbridge.engines.classic.regions import Element, rewindow, union

#: Share of the content's area that the container's notch must be (a corner square
#: leaves a triangle, half of it, outside the hull of the rest).
_NOTCH = 0.3
#: Share of the joint area by which the two together may miss being convex
#: (the staircase of a rasterised edge, a rounded corner).
_CONVEX = 0.02


def join_clipped(elements: list[Element]) -> list[Element]:
    """``elements`` (bottom first) with each clipped shape merged into its container."""
    out = list(elements)
    i = len(out) - 1
    while i > 0:
        content = out[i]
        for j in range(i - 1, -1, -1):
            if _clipped_by(content, out[j]):
                out[j] = union(out[j], content)
                del out[i]
                break
        i -= 1
    return out


def _clipped_by(content: Element, container: Element) -> bool:
    if content.kind != "shape" or container.kind != "shape" or container.color is None:
        return False
    if content.area >= container.area or not boxes_meet(grow(content.box, 2), container.box):
        return False
    y0, y1 = min(content.box[0], container.box[0]), max(content.box[1], container.box[1])
    x0, x1 = min(content.box[2], container.box[2]), max(content.box[3], container.box[3])
    outer = rewindow(container.mask, container.box, (y0, y1, x0, x1))
    inner = rewindow(content.mask, content.box, (y0, y1, x0, x1))
    outer = ndimage.binary_fill_holes(outer)
    if _notch(outer) < _NOTCH * content.area:
        return False
    # The anti-aliased seam between the two belongs to neither: close it.
    joint = cv2.morphologyEx((outer | inner).astype(np.uint8), cv2.MORPH_CLOSE,
                             np.ones((3, 3), np.uint8)).astype(bool)
    joint = ndimage.binary_fill_holes(joint)
    return _notch(joint) <= _CONVEX * joint.sum()


def _notch(mask: np.ndarray) -> int:
    """Pixels inside the convex hull of ``mask`` but outside it."""
    return int((convex_hull(mask) & ~mask).sum())
