"""Plate fill: what was under a peeled element.

In order of preference: the colour of a lower flat element whose hull covers the hole
(amodal completion: a shape continues under what covers it), the background field, and
for anything else (textures, photos) a push-pull pyramid fill, which is fast on large holes
and smooth. OpenCV's Telea is used for thin holes in textures, where it keeps edges better.
A texture that continues under the hole is filled from its own pixels only: the page beside
it (or a transparent surround's key colour) would bleed into the photo's hidden part.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from layerbridge.engines.classic.background import Background
from layerbridge.engines.classic.box import Box


@dataclass(frozen=True)
class Cover:
    """A lower element under a hole, over the hole's crop: its hull (where it may go on
    under the hole), its flat colour (None for a texture) and its own pixels there."""

    hull: np.ndarray
    color: np.ndarray | None
    own: np.ndarray


def push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the pixels where ``known`` is False from the known ones, coarse to fine."""
    if known.all() or not known.any():
        return values.copy() if known.any() else np.zeros_like(values)
    weight = known.astype(np.float32)
    data = values.astype(np.float32) * weight[..., None]
    pyramid = [(data, weight)]
    while min(data.shape[:2]) > 1 and (weight <= 0).any():
        h, w = data.shape[:2]
        size = ((w + 1) // 2, (h + 1) // 2)
        data = cv2.resize(data, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        pyramid.append((data, weight))
    d, wgt = pyramid[-1]
    filled = d / np.maximum(wgt, 1e-8)[..., None]
    for data, weight in reversed(pyramid[:-1]):
        h, w = data.shape[:2]
        up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        own = data / np.maximum(weight, 1e-8)[..., None]
        k = np.clip(weight, 0, 1)[..., None]
        filled = own * k + up * (1 - k)
    out = values.astype(np.float64).copy()
    out[~known] = filled[~known]
    return out


def telea(values: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV Telea inpainting of a thin hole (float RGB in [0, 1] in and out)."""
    img = np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)
    out = cv2.inpaint(img, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    res = values.copy()
    res[hole] = out[hole].astype(np.float64) / 255.0
    return res


def fill_plate(
    image: np.ndarray,
    hole: np.ndarray,
    box: Box,
    covers: list[Cover],
    background: Background | None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Plate colours for the crop ``box`` of ``image`` with ``hole`` (crop-sized) filled.

    ``covers`` lists the lower elements topmost first; the first hull that holds a hole
    pixel decides its colour: the cover's flat colour, or for a texture (colour None) its
    own pixels inpainted into it. Pixels no hull holds take the background field when there
    is one, else are inpainted from everything around. Also returns, per cover, the hole
    pixels it claimed: the lower element continues there.
    """
    plate = image[box.slices].copy()
    todo = hole.copy()
    claims = []
    for cover in covers:
        take = todo & cover.hull
        claims.append(take)
        if take.any():
            if cover.color is None:
                own = cover.own & ~hole
                plate = _inpaint(plate, take, own if own.any() else ~hole)
            else:
                plate[take] = cover.color
            todo &= ~take
    if background is not None and background.ok:
        ys, xs = np.nonzero(todo)
        plate[ys, xs] = background.render(ys + box.y0, xs + box.x0)
    elif todo.any():
        plate = _inpaint(plate, todo, ~todo)
    return plate, claims


def _inpaint(plate: np.ndarray, hole: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``plate`` with ``hole`` filled from the ``known`` pixels only."""
    if cv2.erode(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).any():
        filled = push_pull(plate, known)
    else:
        # Telea draws on every pixel within its radius that is no hole: what is not known
        # near the hole is taken as hole too.
        near = cv2.dilate(hole.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        filled = telea(plate, hole | (near & ~known))
    out = plate.copy()
    out[hole] = filled[hole]
    return out
