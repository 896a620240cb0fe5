"""Rims: two layers that overlap only along the seam where they meet come apart; a layer
lying on another (text on a panel) stays where it is. Each case is hand-made layers."""

from __future__ import annotations

import numpy as np

from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.rims import separate_rims
from layerbridge.engines.classic.scene import Piece

H, W = 60, 80


def _over_all(layers: list[Piece]) -> np.ndarray:
    out = np.zeros((H, W, 3))
    for layer in layers:
        a = layer.pixels[..., 3:4]
        under = out[layer.box.slices]
        out[layer.box.slices] = a * layer.pixels[..., :3] + (1 - a) * under
    return out


def _layer(box: tuple[int, int, int, int], color, alpha: float) -> Piece:
    y0, y1, x0, x1 = box
    pixels = np.zeros((y1 - y0, x1 - x0, 4))
    pixels[..., :3] = color
    pixels[..., 3] = alpha
    return Piece("layer", Box(*box), pixels)


def _page() -> Piece:
    return _layer((0, H, 0, W), (0.95, 0.95, 0.9), 1.0)


def test_shapes_meeting_along_a_seam_share_no_pixel_and_composite_the_same() -> None:
    left = _layer((10, 50, 10, 41), (0.1, 0.3, 0.8), 1.0)
    left.pixels[:, -1, 3] = 0.4  # its anti-aliased right edge ...
    right = _layer((20, 45, 40, 70), (0.9, 0.7, 0.1), 1.0)
    right.pixels[:, 0, 3] = 0.6  # ... is the left edge of the shape beside it
    layers = [_page(), left, right]
    before = _over_all(layers)
    separate_rims(layers)
    assert np.abs(_over_all(layers) - before).max() <= 1 / 255
    lower = np.zeros((H, W), bool)
    upper = np.zeros((H, W), bool)
    lower[10:50, 10:41] = left.pixels[..., 3] > 0
    upper[20:45, 40:70] = right.pixels[..., 3] > 0
    assert not (lower & upper).any()
    # The seam pixels went whole to the one covering them more: the right one.
    assert (right.pixels[:, 0, 3] >= 0.6).all()
    assert (left.pixels[10:35, -1, 3] == 0).all() and (left.pixels[:10, -1, 3] > 0).all()


def test_text_lying_on_a_panel_stays_over_it() -> None:
    panel = _layer((5, 55, 5, 75), (0.2, 0.6, 0.3), 1.0)
    text = _layer((20, 30, 15, 60), (1.0, 1.0, 1.0), 1.0)
    layers = [_page(), panel, text]
    separate_rims(layers)
    assert (panel.pixels[..., 3] == 1).all() and (text.pixels[..., 3] == 1).all()


def test_a_thin_line_beside_a_shape_comes_apart_from_it() -> None:
    """A hairline whose anti-aliased rim is two of its five columns, shared with the shape
    it runs beside: still a seam (nowhere is one opaque over the other)."""
    shape = _layer((10, 50, 10, 42), (0.1, 0.3, 0.8), 1.0)
    shape.pixels[:, -2:, 3] = (0.5, 0.2)
    line = _layer((10, 50, 40, 45), (0.2, 0.2, 0.2), 1.0)
    line.pixels[:, :2, 3] = (0.3, 0.7)
    layers = [_page(), shape, line]
    before = _over_all(layers)
    separate_rims(layers)
    assert np.abs(_over_all(layers) - before).max() <= 1 / 255
    assert not ((shape.pixels[:, -2:, 3] > 0) & (line.pixels[:, :2, 3] > 0)).any()
