"""Ghosts: an element's edge left behind in the background, given back to the element.

The peel keeps for an element only the pixels its colour explains over the plate. Pixels of
an element that do not fit that model stay in the plate: the anti-aliased rims between the
colours of a many-coloured icon, the shades of a glyph filled with a gradient, the outline
of a shape whose contents were peeled first. The background layer then shows a faint copy
of the element's outline, and moving the element leaves it behind.

A background pixel the background field does not explain, that no layer covers and that
lies within a few pixels of a layer, is taken by the nearest layer: at the least opacity
that, over the field, still gives the pixel's colour. The composite is unchanged, and no two
layers come to overlap (the pixel was the background's alone).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from layerbridge.engines.classic.background import Background
from layerbridge.engines.classic.box import Box, rewindow
from layerbridge.engines.classic.peel import min_alpha
from layerbridge.engines.classic.scene import Piece
from layerbridge.engines.classic.tuning import TUNING


def give_back_ghosts(pieces: list[Piece], field: Background | None, shown: np.ndarray) -> None:
    """In place on the layers (bottom first, the bottom one the opaque full-frame
    background): move ghost pixels from the background to the nearest layer. ``shown``:
    the input's opaque pixels (a transparent surround is no element's)."""
    if field is None or not field.ok or len(pieces) < 2:
        return
    base = pieces[0].pixels
    h, w = base.shape[:2]
    owner = np.zeros((h, w), np.int32)  # index of a layer showing there; 0: the background's
    for index, piece in enumerate(pieces[1:], 1):
        owner[piece.box.slices][piece.pixels[..., 3] > 0] = index
    ghosts = (owner == 0) & shown
    ghosts &= np.abs(base[..., :3] - field.render_box(0, h, 0, w)).max(-1) > TUNING.ghost_tol
    if not ghosts.any():
        return
    distance, (near_y, near_x) = ndimage.distance_transform_edt(owner == 0,
                                                               return_indices=True)
    ghosts &= distance <= TUNING.ghost_reach
    ys, xs = np.nonzero(ghosts)
    takers = owner[near_y[ys, xs], near_x[ys, xs]]
    for index in np.unique(takers):
        mine = takers == index
        _take(pieces[index], base, ys[mine], xs[mine], field)


def _take(piece: Piece, base: np.ndarray, ys: np.ndarray, xs: np.ndarray,
          field: Background) -> None:
    """``piece`` takes the background pixels (ys, xs) over the field under them."""
    reach = Box(int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    if not piece.box.contains(reach):
        _grow(piece, piece.box.union(reach))
    seen, under = base[ys, xs, :3], field.render(ys, xs)
    alpha = np.ceil(min_alpha(seen, under) * 255.0 - 1e-6) / 255.0
    alpha = np.clip(alpha, 1 / 255, 1.0)[:, None]
    color = np.rint(np.clip((seen - (1.0 - alpha) * under) / alpha, 0.0, 1.0) * 255.0) / 255.0
    # What the background must now hold so that the layer over it gives the pixel again.
    rest = np.divide(seen - alpha * color, 1.0 - alpha, out=under.copy(), where=alpha < 1.0)
    base[ys, xs, :3] = np.rint(np.clip(rest, 0.0, 1.0) * 255.0) / 255.0
    local = piece.pixels[ys - piece.box.y0, xs - piece.box.x0]
    local[:, :3], local[:, 3] = color, alpha[:, 0]
    piece.pixels[ys - piece.box.y0, xs - piece.box.x0] = local


def _grow(piece: Piece, box: Box) -> None:
    """Widen ``piece`` to ``box``; its new clear pixels take its mean colour, so the
    layer looks right if someone raises their opacity."""
    shown = piece.pixels[..., 3] > 0
    mean = piece.pixels[..., :3][shown].mean(0) if shown.any() else np.zeros(3)
    pixels = rewindow(piece.pixels, piece.box, box)
    inside = rewindow(np.ones(piece.pixels.shape[:2], bool), piece.box, box)
    pixels[~inside, :3] = mean
    piece.box, piece.pixels = box, pixels
