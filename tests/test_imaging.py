"""Shared layer maths: over, composite, trim, premultiplied resize."""

from __future__ import annotations

import numpy as np

from layerbridge.engines.base import Layer
from layerbridge.imaging import composite, over, resize_premultiplied, to_float, trim_to_alpha


def _solid(h: int, w: int, rgba: tuple[int, int, int, int]) -> np.ndarray:
    out = np.empty((h, w, 4), np.uint8)
    out[...] = rgba
    return out


def test_over_half_alpha_blends_colours() -> None:
    bottom = to_float(_solid(1, 1, (0, 0, 255, 255)))
    top = to_float(_solid(1, 1, (255, 0, 0, 128)))
    result = over(bottom, top)[0, 0]
    assert result[3] == 1.0
    assert abs(result[0] - 128 / 255) < 1e-9 and abs(result[2] - 127 / 255) < 1e-9


def test_over_of_transparent_pixels_is_transparent_black() -> None:
    result = over(np.zeros((2, 2, 4)), np.zeros((2, 2, 4)))
    assert not result.any()


def test_composite_places_layers_at_offsets_and_clips() -> None:
    base = Layer("base", _solid(4, 4, (10, 20, 30, 255)))
    dot = Layer("dot", _solid(2, 2, (200, 0, 0, 255)), x=3, y=-1)
    out = composite([base, dot], 4, 4)
    assert tuple(out[0, 3]) == (200, 0, 0, 255)
    assert tuple(out[1, 3]) == (10, 20, 30, 255)
    assert tuple(out[0, 2]) == (10, 20, 30, 255)


def test_composite_of_nothing_is_transparent() -> None:
    assert not composite([], 3, 2).any()


def test_trim_to_alpha_crops_and_moves_the_offset() -> None:
    pixels = np.zeros((10, 8, 4), np.uint8)
    pixels[3:5, 2:7] = (1, 2, 3, 9)
    trimmed = trim_to_alpha(Layer("a", pixels, x=100, y=50))
    assert trimmed is not None
    assert trimmed.pixels.shape == (2, 5, 4)
    assert (trimmed.x, trimmed.y) == (102, 53)


def test_trim_to_alpha_of_empty_layer_is_none() -> None:
    assert trim_to_alpha(Layer("a", np.zeros((3, 3, 4), np.uint8))) is None


def test_resize_premultiplied_has_no_dark_fringe() -> None:
    # A red square on transparent *black*: straight resampling would darken its edge.
    pixels = np.zeros((16, 16, 4), np.uint8)
    pixels[4:12, 4:12] = (255, 0, 0, 255)
    for size in ((5, 5), (37, 37)):
        out = resize_premultiplied(pixels, size)
        seen = out[..., 3] > 8
        assert out.shape == (size[1], size[0], 4)
        assert (out[..., 0][seen] >= 250).all()


def test_resize_premultiplied_same_size_is_a_copy() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    out = resize_premultiplied(pixels, (5, 4))
    assert np.array_equal(out, pixels) and out is not pixels


def test_trim_to_alpha_keeps_every_visible_pixel_of_scattered_alpha() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        pixels[..., 3] *= rng.random((h, w)) < rng.random() * 0.05  # few, scattered pixels
        ys, xs = np.nonzero(pixels[..., 3])
        strided = np.zeros((h, 2 * w, 4), np.uint8)
        strided[:, ::2] = pixels  # a non-contiguous view, as a slice of a bigger image is
        trimmed = trim_to_alpha(Layer("a", strided[:, ::2], x=7, y=-3))
        if ys.size == 0:
            assert trimmed is None
            continue
        assert (trimmed.x, trimmed.y) == (7 + xs.min(), -3 + ys.min())
        expected = pixels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert np.array_equal(trimmed.pixels, expected)
