"""The sensitivity benchmark's resolution runs: a document drawn at another size, its true
layers resampled one by one, is the same picture as its flattened image resampled."""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks.tuning_sensitivity import rescaled
from tests.layerd_metric import Patch, composite


def square(colour: tuple[int, int, int], y: int, x: int, side: int, height: int,
           width: int) -> Patch:
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[...] = (*colour, 255)
    return Patch.from_crop(pixels, x, y, height, width)


def test_a_layer_at_half_size_keeps_its_colour_and_its_edge_is_part_covered() -> None:
    # A red square at (3, 3) of side 6: at half size it covers (1.5, 1.5) to (4.5, 4.5),
    # pixels 2 and 3 fully and pixels 1 and 4 half.
    half = rescaled(square((200, 30, 30), 3, 3, 6, 20, 20), 0.5, 10, 10)
    canvas = half.canvas(10, 10)
    alpha = canvas[..., 3]
    assert np.allclose(alpha[2:4, 2:4], 1.0)
    assert np.allclose(alpha[1, 2:4], 0.5, atol=1 / 255)
    assert np.allclose(alpha[2:4, 4], 0.5, atol=1 / 255)
    assert np.allclose(alpha[1, 1], 0.25, atol=1 / 255)
    assert alpha[0].max() == 0 and alpha[:, 5:].max() == 0
    # Premultiplied resampling: no dark fringe where the square is part covered.
    seen = canvas[alpha > 0]
    assert np.abs(seen[:, :3] * 255 - (200, 30, 30)).max() <= 1


def test_the_layers_resampled_composite_to_the_image_resampled() -> None:
    height, width = 64, 96
    layers = [square((250, 250, 250), 0, 0, 96, height, width),
              square((20, 90, 200), 10, 13, 30, height, width),
              square((230, 40, 40), 25, 31, 31, height, width)]
    image = composite(layers, height, width).astype(np.float32)
    for factor in (0.5, 0.75):
        h, w = int(height * factor), int(width * factor)
        small = [rescaled(layer, factor, h, w) for layer in layers]
        expected = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        got = composite(small, h, w).astype(np.float32)
        assert np.abs(got - expected).max() <= 3, factor


def test_layers_drawn_larger_keep_their_edges_and_do_not_overlap() -> None:
    # Two squares edge to edge: interpolated, each would spread over the other, a depth
    # level the document does not have.
    left = square((20, 90, 200), 4, 4, 6, 20, 20)
    right = square((230, 40, 40), 4, 10, 6, 20, 20)
    for factor in (1.5, 2.0):
        side = int(20 * factor)
        big = [rescaled(layer, factor, side, side) for layer in (left, right)]
        alphas = [layer.canvas(side, side)[..., 3] for layer in big]
        assert not ((alphas[0] > 0) & (alphas[1] > 0)).any(), factor
        assert set(np.unique(alphas[0])) == {0.0, 1.0}
        assert alphas[0].sum() == round(6 * factor) ** 2
