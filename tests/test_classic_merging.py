"""Fewer layers on request (`layers: N`): the most alike elements merge, and layers are
named by what they hold. The stage alone on hand-made elements, then through the server."""

from __future__ import annotations

import numpy as np
import pytest

from layerbridge.engines.classic.merging import merge_alike, merge_to_count
from layerbridge.engines.classic.naming import colour_name, layer_name
from layerbridge.engines.classic.regions import Element
from layerbridge.imaging import composite
from tests.helpers import as_layers, image_input

WHITE, RED, BLUE = np.array([1.0, 1, 1]), np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.2, 0.9])


def block(y0: int, y1: int, x0: int, x1: int, colour: np.ndarray, kind: str = "shape",
          member: int = 0) -> Element:
    return Element((y0, y1, x0, x1), np.ones((y1 - y0, x1 - x0), bool), colour, kind,
                   [member])


def members(elements: list[Element]) -> list[list[int]]:
    return [sorted(e.members) for e in elements]


def test_lines_of_one_paragraph_merge_before_unlike_neighbours() -> None:
    # z-order bottom first: a red box, two white text lines one under the other, a blue box.
    elements = [block(10, 60, 10, 60, RED, member=0),
                block(100, 112, 10, 150, WHITE, "text", 1),
                block(116, 128, 10, 140, WHITE, "text", 2),
                block(10, 60, 200, 260, BLUE, member=3)]
    assert members(merge_to_count(elements, 3, 300, 300)) == [[0], [1, 2], [3]]


def test_alike_elements_merge_across_one_that_overlaps_neither() -> None:
    # Two white lines with a red box between them in z-order, apart from both: the lines
    # merge (one moves next to the other; nothing in between covers it).
    elements = [block(100, 112, 10, 150, WHITE, "text", 0),
                block(10, 60, 200, 260, RED, member=1),
                block(116, 128, 10, 140, WHITE, "text", 2)]
    merged = merge_to_count(elements, 2, 300, 300)
    assert sorted(members(merged)) == [[0, 2], [1]]
    text = next(e for e in merged if e.kind == "text")
    assert np.array_equal(text.color, WHITE)


def test_an_element_in_between_that_covers_both_keeps_the_order() -> None:
    # The red box lies over the lower line and under the upper one: neither line may move
    # past it, so what merges are z-neighbours, and the order of overlaps is kept.
    elements = [block(100, 112, 10, 150, WHITE, "text", 0),
                block(90, 140, 0, 160, RED, member=1),
                block(116, 128, 10, 140, WHITE, "text", 2)]
    merged = merge_to_count(elements, 2, 300, 300)
    assert members(merged) in ([[0, 1], [2]], [[0], [1, 2]])


def test_merging_to_zero_or_more_than_there_are() -> None:
    elements = [block(0, 5, 0, 5, RED), block(10, 15, 10, 15, BLUE, member=1)]
    assert merge_to_count(elements, 0, 20, 20) == []
    assert members(merge_to_count(elements, 5, 20, 20)) == [[0], [1]]


@pytest.mark.parametrize(("rgb", "name"), [
    ((0, 0, 0), "black"), ((1, 1, 1), "white"), ((0.5, 0.5, 0.5), "grey"),
    ((0.9, 0.1, 0.1), "red"), ((1, 0.55, 0), "orange"), ((0.95, 0.9, 0.1), "yellow"),
    ((0.1, 0.7, 0.2), "green"), ((0.1, 0.2, 0.9), "blue"), ((0.9, 0.1, 0.8), "magenta"),
    ((0.5, 0.1, 0.8), "purple"), ((0.45, 0.25, 0.05), "brown"), ((1, 0.8, 0.85), "pink"),
])
def test_colour_names(rgb, name) -> None:
    assert colour_name(np.array(rgb, float)) == name


def test_layer_names_say_kind_number_and_colour() -> None:
    assert layer_name(block(0, 1, 0, 1, RED, "text"), 2) == "Text 2 (red)"
    photo = Element((0, 1, 0, 1), np.ones((1, 1), bool), None, "texture", [0])
    assert layer_name(photo, 1) == "Image 1"


def poster() -> np.ndarray:
    """A blue page: a red disc, a two-line white title, a yellow bar."""
    h, w = 240, 320
    image = np.zeros((h, w, 4), np.uint8)
    image[...] = (30, 60, 200, 255)
    yy, xx = np.mgrid[:h, :w]
    image[(yy - 70) ** 2 + (xx - 240) ** 2 < 40**2, :3] = (220, 30, 30)
    for top in (40, 70):  # two lines of "words": runs of small blocks
        for left in range(20, 150, 14):
            image[top : top + 18, left : left + 10, :3] = 255
    image[190:205, 20:300, :3] = (240, 220, 20)
    return image


def test_layers_n_through_the_server_groups_like_with_like(classic_server) -> None:
    image = poster()
    with classic_server.client("merge") as client:
        result = client.run("decompose", {"layers": 4}, [image_input(image)])
    names = [m["name"] for m in result.layers]
    assert len(names) == 4 and names[0] == "background", names
    colours = sorted(name.rsplit("(", 1)[-1].rstrip(")") for name in names[1:])
    assert colours == ["red", "white", "yellow"], names
    layers = as_layers(result.layers)
    title = layers[[n.endswith("(white)") for n in names].index(True)]
    # Both lines of the title, all 20 of its blocks, are in the one white layer.
    assert title.pixels.shape[0] >= 48 and int((title.pixels[..., 3] == 255).sum()) == 20 * 180
    flat = composite(layers, 320, 240)
    assert int(np.abs(flat.astype(int) - image.astype(int)).max()) <= 1


def test_without_a_count_only_close_parts_of_one_colour_merge() -> None:
    # A row of five small red bars, a blue bar beside them, a red block far away.
    bars = [block(100, 140, 10 + 12 * k, 18 + 12 * k, RED, member=k) for k in range(5)]
    elements = [*bars, block(100, 140, 70, 78, BLUE, member=5),
                block(250, 290, 250, 290, RED, member=6)]
    assert members(merge_alike(elements, 300, 300)) == [[0, 1, 2, 3, 4], [5], [6]]


def test_the_merge_reads_its_threshold_when_it_runs() -> None:
    # The tuning benchmark (benchmarks/tuning_sensitivity.py) scales one TUNING value in
    # place: a stage that bound it when its module loaded would run on the old value.
    from benchmarks.tuning_sensitivity import scaled

    bars = [block(100, 140, 10 + 12 * k, 18 + 12 * k, RED, member=k) for k in range(5)]
    with scaled("alike_cost", 0.0) as value:
        assert value == 0.0
        assert members(merge_alike(bars, 300, 300)) == [[0], [1], [2], [3], [4]]
    # As it is, the bars merge down to the two elements a design keeps apart.
    assert len(merge_alike(bars, 300, 300)) == 2


def test_without_a_count_two_elements_stay_apart() -> None:
    # Two alike bars side by side would merge, but a design keeps two elements to edit.
    elements = [block(100, 140, 10, 18, RED, member=0), block(100, 140, 22, 30, RED, member=1)]
    assert members(merge_alike(elements, 300, 300)) == [[0], [1]]
    three = [*elements, block(100, 140, 34, 42, RED, member=2)]
    assert len(merge_alike(three, 300, 300)) == 2
