"""The classic engine's layers always over-composite back to its input (within 1 level)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from layerd_metric import read_psd_layers
from synthetic import design, photo_like
from synthetic import opaque as _opaque

from layerbridge.engines.base import InputImage, JobContext, JobRequest
from layerbridge.engines.classic import ClassicEngine
from layerbridge.imaging import composite

PSDS = Path(__file__).parent / "data" / "psd"


@cache
def engine() -> ClassicEngine:
    return ClassicEngine()


def run(pixels: np.ndarray, layers: int | str = "auto", x: int = 0, y: int = 0):
    op, key = ("split", "layer") if (x, y) != (0, 0) else ("decompose", "image")
    request = JobRequest("job", op, {"layers": layers}, {key: InputImage(key, pixels, x, y)})
    return list(engine().run(request, JobContext()))


def assert_reconstructs(pixels: np.ndarray, layers: int | str = "auto") -> list:
    """The over-composite equals the input: alpha and premultiplied colour within 1 level,
    straight colour within 1 level wherever the input is opaque."""
    out = run(pixels, layers)
    h, w = pixels.shape[:2]
    got = composite(out, w, h).astype(np.int32)
    want = pixels.astype(np.int32)
    assert np.abs(got[..., 3] - want[..., 3]).max() <= 1
    pre_got = got[..., :3] * got[..., 3:] / 255.0
    pre_want = want[..., :3] * want[..., 3:] / 255.0
    assert np.abs(pre_got - pre_want).max() <= 1.01
    opaque = want[..., 3] == 255
    assert np.abs(got[..., :3] - want[..., :3])[opaque].max(initial=0) <= 1
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_designs_reconstruct(seed: int) -> None:
    _, pixels = design(seed, 320, 240)
    assert len(assert_reconstructs(pixels)) >= 2


@cache
def psd_composite(name: str) -> np.ndarray:
    _, total = read_psd_layers(PSDS / name)
    return np.clip(np.rint(total * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["psdjs-example.psd", "blend-and-clipping.psd", "masks.psd"])
def test_psd_composites_reconstruct(name: str) -> None:
    assert_reconstructs(psd_composite(name))


def test_photo_like_images_reconstruct() -> None:
    assert_reconstructs(photo_like(0))


def test_random_noise_reconstructs() -> None:
    rng = np.random.default_rng(3)
    assert_reconstructs(_opaque(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)))


def test_transparent_input_reconstructs_with_its_alpha() -> None:
    _, pixels = design(4, 160, 120)
    pixels = pixels.copy()
    ys, xs = np.mgrid[0:120, 0:160]
    pixels[..., 3] = np.clip(xs * 2, 0, 255).astype(np.uint8)  # a ramp, 0 at the left edge
    pixels[:10, :, 3] = 0
    assert_reconstructs(pixels)


def test_fully_transparent_input() -> None:
    out = assert_reconstructs(np.zeros((12, 9, 4), np.uint8))
    assert all(not layer.pixels[..., 3].any() for layer in out)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2), (5, 1)])
def test_tiny_images_reconstruct(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    assert_reconstructs(rng.integers(0, 256, shape + (4,), dtype=np.uint8))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(4))),
       st.sampled_from(["auto", 1, 2, 3]))
def test_any_small_image_reconstructs(pixels: np.ndarray, layers: int | str) -> None:
    assert_reconstructs(pixels, layers)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_layer_count_is_honoured_and_exact(count: int) -> None:
    _, pixels = design(5, 320, 240)
    out = assert_reconstructs(pixels, count)
    assert len(out) == count


def test_split_returns_parts_at_the_layers_position() -> None:
    _, pixels = design(6, 200, 150)
    out = run(pixels, "auto", x=40, y=25)
    # Each part comes over its own box, inside the split layer's rectangle.
    assert all(layer.x >= 40 and layer.y >= 25 for layer in out)
    assert all(layer.x + layer.pixels.shape[1] <= 240 and layer.y + layer.pixels.shape[0] <= 175
               for layer in out)
    canvas = composite(out, 240, 175)[25:, 40:]
    assert np.abs(canvas.astype(int) - pixels.astype(int)).max() <= 1
