"""The path-choice benchmark forces the classic engine's switch each way, and puts it back."""

from __future__ import annotations

import numpy as np

from benchmarks.path_choice import forced
from layerbridge.engines.classic.decompose import STAGES, Scene
from layerbridge.engines.classic.tuning import TUNING


def path_taken(image: np.ndarray) -> str:
    """The path the first three stages (regions, background, text) take for ``image``."""
    scene = Scene(image, "auto")
    for stage in STAGES[:3]:
        scene = stage.run(scene)
    return scene.path


def two_squares() -> np.ndarray:
    image = np.full((120, 160, 4), 255, np.uint8)
    image[20:60, 20:60, :3] = (200, 40, 40)
    image[50:100, 90:140, :3] = (30, 60, 180)
    return image


def tiles(rows: int, cols: int) -> np.ndarray:
    """A page of ``rows`` x ``cols`` squares, each of its own colour, well apart."""
    image = np.full((40 * rows, 40 * cols, 4), 255, np.uint8)
    for k in range(rows * cols):
        y, x = 40 * (k // cols) + 10, 40 * (k % cols) + 10
        image[y : y + 20, x : x + 20, :3] = (25 * (k % 9), 40 * (k // 9 % 6), 200)
    return image


def test_a_page_of_more_elements_than_layers_is_taken_one_by_one_when_forced() -> None:
    page = tiles(7, 8)  # 56 elements, more than max_layers: the switch takes it in blocks
    assert path_taken(page) == "blocks"
    with forced("design"):
        assert path_taken(page) == "design"
    with forced("switch"):
        assert path_taken(page) == "blocks"


def test_two_squares_are_taken_in_blocks_when_forced_and_the_switch_is_put_back() -> None:
    before = (TUNING.max_elements, TUNING.max_layers)
    assert path_taken(two_squares()) == "design"
    with forced("blocks"):
        assert path_taken(two_squares()) == "blocks"
    assert (TUNING.max_elements, TUNING.max_layers) == before
    assert path_taken(two_squares()) == "design"
