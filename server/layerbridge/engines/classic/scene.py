"""What the pipeline's stages hand on to each other: the :class:`Scene`, and the layers out.

Each stage (decompose.py) reads some fields of the scene and fills others; a field a stage
has not filled yet is None (or empty). A stage can be run alone on a scene made by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from layerbridge.engines.classic.background import Background
from layerbridge.engines.classic.box import Box, rewindow
from layerbridge.engines.classic.regions import Components, Element

Progress = Callable[[float, str], None]
Check = Callable[[], None]
#: How the image is taken: a design of elements on a background field, a design of too
#: many elements taken in blocks, a photo with one subject, or the whole image as one layer.
Path = Literal["design", "blocks", "photo", "whole"]


@dataclass
class Piece:
    """One output layer: float RGBA ``pixels`` over ``box`` of the document.

    Outside its box a layer is transparent; layers are kept this small so that a document
    of many elements does not hold a full frame per element."""

    name: str
    box: Box
    pixels: np.ndarray

    def full(self, height: int, width: int) -> np.ndarray:
        """The layer as a full (height, width, 4) frame, transparent outside its box."""
        return rewindow(self.pixels, self.box, Box.of_frame(height, width))


def _no_check() -> None:
    return None


def _no_progress(fraction: float) -> None:
    return None


@dataclass
class Scene:
    """The document and what the stages found in it so far."""

    #: The input: uint8 RGBA (h, w, 4).
    rgba: np.ndarray
    #: Layers asked for: "auto" or a count (background included).
    layers: int | str = "auto"
    #: The input as opaque float RGB in [0, 1], a transparent surround given ``surround``.
    rgb: np.ndarray | None = None
    surround: np.ndarray | None = None
    #: ``rgb`` in 8 bits, and its linked components (the analysis frames: freed at the peel).
    rgb8: np.ndarray | None = None
    components: Components | None = None
    path: Path = "design"
    #: The background field (None for photos) and the pixels it explains.
    background: Background | None = None
    is_background: np.ndarray | None = None
    #: The elements found, bottom first once ordered.
    elements: list[Element] = field(default_factory=list)
    #: Labels of thin components kept only if they join a text line.
    thin: set[int] = field(default_factory=set)
    #: element index -> box-sized alpha (photo subjects)
    soft_alpha: dict[int, np.ndarray] = field(default_factory=dict)
    #: element index -> full-frame mask of plate pixels filled with it, its colour or its
    #: texture (amodal extension)
    hidden: dict[int, np.ndarray] = field(default_factory=dict)
    #: What is left of ``rgb`` once the elements are peeled off it: the background's pixels.
    plate: np.ndarray | None = None
    #: The layers, bottom first.
    pieces: list[Piece] = field(default_factory=list)
    #: Called now and then inside long stages: raises to cancel the job.
    check: Check = _no_check
    #: Progress within the running stage, 0..1.
    progress: Callable[[float], None] = _no_progress

    @property
    def frame(self) -> tuple[int, int]:
        """The document's height and width."""
        return self.rgba.shape[0], self.rgba.shape[1]
