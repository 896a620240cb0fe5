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
from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.color import color_distance
from layerbridge.engines.classic.peel import bare, split_layer
from layerbridge.engines.classic.scene import Piece
from layerbridge.engines.classic.tuning import TUNING


def give_back_ghosts(pieces: list[Piece], field: Background | None, shown: np.ndarray,
                     surround: np.ndarray | None = None) -> None:
    """In place on the layers (bottom first, the bottom one the opaque full-frame
    background): move ghost pixels from the background to the nearest layer. ``shown``:
    the input's opaque pixels (a transparent surround is no element's); ``surround``: the
    key colour a transparent surround was given, if any."""
    if field is None or not field.ok or len(pieces) < 2:
        return
    base = pieces[0].pixels
    h, w = base.shape[:2]
    owner = np.zeros((h, w), np.int32)  # index of a layer showing there; 0: the background's
    for index, piece in enumerate(pieces[1:], 1):
        owner[piece.box.slices][piece.pixels[..., 3] > 0] = index
    ghosts = (owner == 0) & shown
    ghosts &= color_distance(base[..., :3], field.render_box(0, h, 0, w)) > TUNING.ghost_tol
    if not ghosts.any():
        return
    distance, (near_y, near_x) = ndimage.distance_transform_edt(owner == 0,
                                                               return_indices=True)
    ghosts &= distance <= TUNING.ghost_reach
    ys, xs = np.nonzero(ghosts)
    takers = owner[near_y[ys, xs], near_x[ys, xs]]
    for index in np.unique(takers):
        mine = takers == index
        _take(pieces[index], base, ys[mine], xs[mine], field, surround)


def _take(piece: Piece, base: np.ndarray, ys: np.ndarray, xs: np.ndarray,
          field: Background, surround: np.ndarray | None) -> None:
    """``piece`` takes the background pixels (ys, xs) over the field under them."""
    reach = Box(int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    if not piece.box.contains(reach):
        _grow(piece, piece.box.union(reach))
    # Peeled off the pixel like any element, from no alpha of its own: split_layer raises it
    # to the least that keeps the colour in range, and gives what the background must now
    # hold under it.
    seen, plate = base[ys, xs, :3], field.render(ys, xs)
    alpha = np.zeros(len(ys))
    if surround is not None:
        alpha[bare(seen, plate, surround)] = 1.0
    layer, under = split_layer(seen, plate, alpha, None)
    base[ys, xs, :3] = np.rint(under * 255.0) / 255.0
    piece.pixels[ys - piece.box.y0, xs - piece.box.x0] = layer


def _grow(piece: Piece, box: Box) -> None:
    """Widen ``piece`` to ``box``; its new clear pixels take its mean colour, so the
    layer looks right if someone raises their opacity."""
    shown = piece.pixels[..., 3] > 0
    pixels = np.zeros((box.height, box.width, 4), piece.pixels.dtype)
    pixels[..., :3] = piece.pixels[..., :3][shown].mean(0) if shown.any() else 0.0
    pixels[piece.box.within(box)] = piece.pixels
    piece.box, piece.pixels = box, pixels
