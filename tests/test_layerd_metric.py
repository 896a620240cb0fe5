"""The LayerD metric on hand-made cases whose scores are known."""

from __future__ import annotations

import numpy as np
from layerd_metric import dtw_align, evaluate, group_unordered, over, pair_score


def _layer(h: int, w: int, box: tuple[int, int, int, int], rgb=(1.0, 0.0, 0.0), a=1.0):
    out = np.zeros((h, w, 4))
    y0, y1, x0, x1 = box
    out[y0:y1, x0:x1, :3] = rgb
    out[y0:y1, x0:x1, 3] = a
    return out


def _background(h: int = 8, w: int = 8) -> np.ndarray:
    return _layer(h, w, (0, h, 0, w), (0.5, 0.5, 0.5))


def test_identical_stacks_score_perfectly() -> None:
    stack = [_background(), _layer(8, 8, (1, 4, 1, 4)), _layer(8, 8, (2, 6, 2, 6), (0, 1, 0))]
    score = evaluate(stack, stack, max_merges=0)[0]
    assert score.l1 == 0.0 and score.iou == 1.0


def test_pair_score_soft_iou_and_l1() -> None:
    true = _layer(4, 4, (0, 4, 0, 4), a=1.0)
    pred = _layer(4, 4, (0, 4, 0, 4), (0.0, 0.0, 0.0), a=0.5)
    l1, iou = pair_score(pred, true)
    assert iou == 0.5
    assert abs(l1 - 1 / 3) < 1e-12  # red vs black: one channel of three differs by 1


def test_disjoint_layers_have_zero_iou() -> None:
    l1, iou = pair_score(_layer(4, 4, (0, 2, 0, 2)), _layer(4, 4, (2, 4, 2, 4)))
    assert iou == 0.0


def test_non_overlapping_neighbours_form_one_group() -> None:
    a, b = _layer(8, 8, (0, 2, 0, 2)), _layer(8, 8, (5, 7, 5, 7))
    c = _layer(8, 8, (1, 6, 1, 6))
    groups = group_unordered([a, b, c])
    assert len(groups) == 2
    assert groups[0][..., 3].sum() == 8


def test_a_split_layer_is_forgiven_by_grouping() -> None:
    whole = _layer(8, 8, (1, 3, 1, 7))
    left, right = _layer(8, 8, (1, 3, 1, 4)), _layer(8, 8, (1, 3, 4, 7))
    score = evaluate([_background(), left, right], [_background(), whole], max_merges=0)[0]
    assert score.iou == 1.0


def test_merges_repair_an_over_split_prediction() -> None:
    low, high = _layer(8, 8, (1, 6, 1, 6)), _layer(8, 8, (2, 4, 2, 4), (0, 0, 1))
    truth = [_background(), low, high]
    merged = low.copy()
    merged[2:4, 2:4, :3] = (0, 0, 1)
    scores = evaluate([_background(), merged], truth, max_merges=2)
    assert scores[0].iou < 1.0
    assert scores[1].iou == 1.0 and scores[2].iou == 1.0


def test_white_background_goes_under_a_transparent_truth() -> None:
    shape = _layer(8, 8, (2, 5, 2, 5))
    white = _layer(8, 8, (0, 8, 0, 8), (1.0, 1.0, 1.0))
    assert evaluate([white, shape], [shape], max_merges=0)[0].iou == 1.0


def test_dtw_path_is_monotone_and_complete() -> None:
    cost = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    path = dtw_align(cost)
    assert path[0] == (0, 0) and path[-1] == (2, 2)
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(path, path[1:], strict=False))
    assert sum(cost[p] for p in path) == 0.0


def test_grouping_joins_non_neighbours_that_nothing_above_overlaps() -> None:
    # Stack bg, a, c, b with c over a and b apart from both: b is on top like c, so b and c
    # form one group although they are not neighbours, and a stack with b lower scores the same.
    a, c = _layer(8, 8, (0, 3, 0, 3)), _layer(8, 8, (2, 5, 2, 5), (0, 1, 0))
    b = _layer(8, 8, (6, 8, 6, 8), (0, 0, 1))
    assert len(group_unordered([_background(), a, c, b])) == 3
    score = evaluate([_background(), b, a, c], [_background(), a, c, b], max_merges=0)[0]
    assert score.l1 == 0.0 and score.iou == 1.0


def test_crops_score_as_their_full_canvases() -> None:
    from layerd_metric import Patch, evaluate_patches

    rng = np.random.default_rng(5)
    h, w = 20, 30
    crops = []
    for _ in range(4):
        y, x = int(rng.integers(-3, h - 4)), int(rng.integers(-3, w - 4))
        pixels = rng.integers(0, 256, (int(rng.integers(3, 12)), int(rng.integers(3, 12)), 4),
                              dtype=np.uint8)
        pixels[..., 3] = np.where(rng.random(pixels.shape[:2]) < 0.3, 0, pixels[..., 3])
        crops.append((pixels, x, y))
    patches = [Patch.from_crop(p, x, y, h, w) for p, x, y in crops]
    full = [p.canvas(h, w) for p in patches]
    background = _background(h, w)
    by_canvas = evaluate([background, *full[:2]], [background, *full[2:]], max_merges=2)
    by_patch = evaluate_patches([Patch.from_canvas(background), *patches[:2]],
                                [Patch.from_canvas(background), *patches[2:]], h, w, 2)
    for a, b in zip(by_canvas, by_patch, strict=True):
        assert abs(a.l1 - b.l1) < 1e-6 and abs(a.iou - b.iou) < 1e-6
    # A crop reaching past the canvas is clipped to it.
    assert all(p.box is None or (p.box[1] <= h and p.box[3] <= w) for p in patches)


def test_depth_levels_count_occlusion_not_layers() -> None:
    from layerd_metric import Patch, depth_levels, with_white_under

    # Two layers side by side on a background are one level above it; a third over one of
    # them is a level more.
    a, b = _layer(8, 8, (0, 3, 0, 3)), _layer(8, 8, (5, 8, 5, 8), (0, 1, 0))
    c = _layer(8, 8, (1, 2, 1, 2), (0, 0, 1))
    side_by_side = [Patch.from_canvas(x) for x in (_background(), a, b)]
    assert depth_levels(side_by_side) == 2
    assert depth_levels([*side_by_side, Patch.from_canvas(c)]) == 3
    # A truth whose bottom layer is not opaque is scored over white: one level more.
    assert len(with_white_under(side_by_side, 8, 8)) == 3
    assert depth_levels(with_white_under(side_by_side[1:], 8, 8)) == 2
    assert with_white_under(side_by_side[1:], 8, 8)[0].rest.tolist() == [1.0, 1.0, 1.0]


def test_level_map_says_where_each_true_level_is_seen() -> None:
    from layerd_metric import Patch, level_map

    # Truth: a background, a panel, a label on the panel (3 levels). The prediction keeps
    # the panel in its background and lifts the label only (2 levels).
    panel, label = _layer(8, 8, (0, 4, 0, 8), (0, 0, 1)), _layer(8, 8, (1, 2, 1, 3))
    true = [Patch.from_canvas(x) for x in (_background(), panel, label)]
    flat = over(_background(), panel)
    pred = [Patch.from_canvas(x) for x in (flat, label)]
    levels = level_map(pred, true, 8, 8)
    assert [t.area for t in levels] == [1.0, 0.5, 2 / 64]
    # The background is half hidden by the panel; the label is all seen.
    assert levels[0].visible == 0.5 and levels[2].visible == 1.0
    assert levels[0].found_in == (1.0, 0.0)  # all seen in the predicted background
    assert levels[1].found_in == (1.0, 0.0)  # the panel: left in the background
    assert levels[2].found_in == (0.0, 1.0)  # the label: lifted, as in the truth


def test_pixel_ceiling_keeps_only_what_the_picture_shows() -> None:
    from layerd_metric import Patch, evaluate_patches, pixel_ceiling

    # A grey page, a grey box on it (the page's colour: no picture shows it), a red square
    # half hidden by a blue one on top.
    grey = (0.5, 0.5, 0.5)
    stack = [_background(), _layer(8, 8, (0, 4, 0, 4), grey), _layer(8, 8, (2, 6, 2, 6)),
             _layer(8, 8, (2, 6, 4, 8), (0, 0, 1))]
    true = [Patch.from_canvas(x) for x in stack]
    ceiling = [p.canvas(8, 8) for p in pixel_ceiling(true, 8, 8)]
    assert len(ceiling) == 3  # the grey box is gone
    np.testing.assert_array_equal(ceiling[0], stack[0])  # the page whole
    seen_red = _layer(8, 8, (2, 6, 2, 4))[..., 3]
    np.testing.assert_array_equal(ceiling[1][..., 3], seen_red)  # only where it is seen
    np.testing.assert_array_equal(ceiling[2], stack[3])  # the top layer whole
    # Scored against the truth, the ceiling falls short where the truth holds what no
    # picture shows; the truth against itself is perfect.
    assert evaluate_patches(pixel_ceiling(true, 8, 8), true, 8, 8, 0)[0].iou < 1.0
    assert evaluate_patches(true, true, 8, 8, 0)[0].iou == 1.0
