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

from layerbridge.engines.classic.box import rewindow
from layerbridge.engines.classic.hulls import convex_hull
from layerbridge.engines.classic.regions import Element, union
from layerbridge.engines.classic.tuning import TUNING


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
    if (content.area >= container.area
            or not content.box.grow(TUNING.touch_reach).intersects(container.box)):
        return False
    both = content.box.union(container.box)
    outer = rewindow(container.mask, container.box, both)
    inner = rewindow(content.mask, content.box, both)
    outer = ndimage.binary_fill_holes(outer)
    if _notch(outer) < TUNING.clip_notch * content.area:
        return False
    # The anti-aliased seam between the two belongs to neither: close it.
    joint = cv2.morphologyEx((outer | inner).astype(np.uint8), cv2.MORPH_CLOSE,
                             np.ones((3, 3), np.uint8)).astype(bool)
    joint = ndimage.binary_fill_holes(joint)
    return _notch(joint) <= TUNING.clip_convex * joint.sum()


def _notch(mask: np.ndarray) -> int:
    """Pixels inside the convex hull of ``mask`` but outside it."""
    return int((convex_hull(mask) & ~mask).sum())
