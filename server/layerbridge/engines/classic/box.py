"""Boxes: the rectangle (rows y0..y1, columns x0..x1, ends excluded) an element, a hull or a
layer occupies in the document.

A :class:`Box` is a named tuple, so it still unpacks as ``y0, y1, x0, x1`` and compares with
plain tuples; the helpers below are the few things the engine does with boxes again and
again (crop an array, test overlap, join two, grow by a band).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Box(NamedTuple):
    """Rows ``y0:y1`` and columns ``x0:x1`` of the document (pixels, ends excluded)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @classmethod
    def of_frame(cls, height: int, width: int) -> Box:
        """The whole document."""
        return cls(0, height, 0, width)

    @classmethod
    def of_window(cls, window: tuple[slice, slice], origin: tuple[int, int] = (0, 0)) -> Box:
        """The box of a (rows, columns) pair of slices, such as ``ndimage.find_objects``
        gives, found in a crop whose corner is at ``origin`` (y, x)."""
        rows, cols = window
        return cls(origin[0] + rows.start, origin[0] + rows.stop,
                   origin[1] + cols.start, origin[1] + cols.stop)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def size(self) -> int:
        """Pixels in the box."""
        return self.height * self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        """``array[box.slices]`` is the box's crop of a document-sized array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def within(self, outer: Box) -> tuple[slice, slice]:
        """This box's crop of an array that covers box ``outer``."""
        return (slice(self.y0 - outer.y0, self.y1 - outer.y0),
                slice(self.x0 - outer.x0, self.x1 - outer.x0))

    def intersects(self, other: tuple[int, int, int, int]) -> bool:
        """Whether the two share a pixel."""
        y0, y1, x0, x1 = other
        return self.y0 < y1 and y0 < self.y1 and self.x0 < x1 and x0 < self.x1

    def intersection(self, other: tuple[int, int, int, int]) -> Box:
        """The part both cover (empty, with y0 >= y1 or x0 >= x1, when they do not meet)."""
        y0, y1, x0, x1 = other
        return Box(max(self.y0, y0), min(self.y1, y1), max(self.x0, x0), min(self.x1, x1))

    @property
    def empty(self) -> bool:
        return self.y0 >= self.y1 or self.x0 >= self.x1

    def union(self, other: tuple[int, int, int, int]) -> Box:
        """The smallest box holding both."""
        y0, y1, x0, x1 = other
        return Box(min(self.y0, y0), max(self.y1, y1), min(self.x0, x0), max(self.x1, x1))

    def contains(self, other: tuple[int, int, int, int]) -> bool:
        """Whether ``other`` lies inside this box."""
        y0, y1, x0, x1 = other
        return y0 >= self.y0 and y1 <= self.y1 and x0 >= self.x0 and x1 <= self.x1

    def grow(self, band: int, frame: tuple[int, int] | None = None) -> Box:
        """The box grown by ``band`` pixels on every side; clipped to a ``frame`` (height,
        width) when one is given."""
        grown = Box(self.y0 - band, self.y1 + band, self.x0 - band, self.x1 + band)
        if frame is None:
            return grown
        return Box(max(grown.y0, 0), min(grown.y1, frame[0]),
                   max(grown.x0, 0), min(grown.x1, frame[1]))

    def gap(self, other: tuple[int, int, int, int]) -> float:
        """Pixels between the two boxes along the axis where they are furthest apart (0
        where they meet)."""
        y0, y1, x0, x1 = other
        dy = max(self.y0 - y1, y0 - self.y1, 0)
        dx = max(self.x0 - x1, x0 - self.x1, 0)
        return float(max(dy, dx))

    def touches_edge(self, height: int, width: int) -> bool:
        """Whether the box runs to an edge of a (height, width) document."""
        return self.y0 == 0 or self.x0 == 0 or self.y1 == height or self.x1 == width


def rewindow(values: np.ndarray, src: tuple[int, int, int, int],
             dst: tuple[int, int, int, int]) -> np.ndarray:
    """Re-window a box-sized array from box ``src`` to box ``dst`` (zero outside ``src``)."""
    src, dst = Box(*src), Box(*dst)
    out = np.zeros((dst.height, dst.width) + values.shape[2:], values.dtype)
    common = src.intersection(dst)
    if not common.empty:
        out[common.within(dst)] = values[common.within(src)]
    return out
