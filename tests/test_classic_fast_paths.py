"""The classic engine's fast paths answer exactly as the plain computations they replaced.

Speed-ups of the engine must leave its layers byte for byte unchanged
(``benchmarks/layer_digests.py`` checks whole documents); these tests hold each fast path to
its plain form on many random inputs, shapes the documents may not happen to contain.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from layerbridge.engines.classic.hulls import convex_hull
from layerbridge.engines.classic.regions import _within_tol
from layerbridge.engines.classic.tuning import TUNING


def _hull_of_every_pixel(mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape, np.uint8)
    points = cv2.findNonZero(mask.astype(np.uint8))
    if points is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    return out.astype(bool)


def _random_mask(rng: np.random.Generator, kind: int) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(1, 120, 2))
    if kind == 0:  # specks
        return rng.random((h, w)) < rng.random() * 0.3
    mask = np.zeros((h, w), bool)
    if kind == 1:  # a few rectangles
        for _ in range(int(rng.integers(1, 5))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            mask[y : y + int(rng.integers(1, 30)), x : x + int(rng.integers(1, 30))] = True
    elif kind == 2:  # one line
        mask[int(rng.integers(0, h)), int(rng.integers(0, w)) :] = True
    else:  # a disc with a hole
        ys, xs = np.mgrid[:h, :w]
        r2 = (ys - h / 2) ** 2 + (xs - w / 2) ** 2
        mask = (r2 < rng.random() * h * w / 3) & (r2 > rng.random() * h * w / 20)
    return mask


@pytest.mark.parametrize("kind", range(4))
def test_the_hull_from_row_ends_is_the_hull_of_every_pixel(kind: int) -> None:
    rng = np.random.default_rng(kind)
    for _ in range(500):
        mask = _random_mask(rng, kind)
        np.testing.assert_array_equal(convex_hull(mask), _hull_of_every_pixel(mask))


def test_an_empty_mask_has_an_empty_hull() -> None:
    assert not convex_hull(np.zeros((5, 7), bool)).any()


def test_neighbour_links_match_the_widened_difference() -> None:
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    rgb8[:, :40] = rng.integers(100, 100 + 2 * TUNING.link_tol, (64, 40, 3), dtype=np.uint8)
    wide = rgb8.astype(np.int16)
    plain = np.abs(wide[:, 1:] - wide[:, :-1]).max(axis=-1) <= TUNING.link_tol
    np.testing.assert_array_equal(_within_tol(rgb8[:, 1:], rgb8[:, :-1]), plain)
    plain = np.abs(wide[1:] - wide[:-1]).max(axis=-1) <= TUNING.link_tol
    np.testing.assert_array_equal(_within_tol(rgb8[1:], rgb8[:-1]), plain)
    assert plain.any() and not plain.all()


def _components_of_the_link_graph(rgb8: np.ndarray, cut: np.ndarray | None) -> np.ndarray:
    """Labels 1..n of the graph of links between 4-neighbours, numbered as SciPy numbers
    them (by each component's first pixel)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h, w = rgb8.shape[:2]
    wide = rgb8.astype(np.int16)
    right = np.abs(wide[:, 1:] - wide[:, :-1]).max(axis=-1) <= TUNING.link_tol
    down = np.abs(wide[1:] - wide[:-1]).max(axis=-1) <= TUNING.link_tol
    if cut is not None:
        right &= cut[:, 1:] == cut[:, :-1]
        down &= cut[1:] == cut[:-1]
    idx = np.arange(h * w).reshape(h, w)
    src = np.concatenate([idx[:, :-1][right], idx[:-1][down]])
    dst = np.concatenate([idx[:, 1:][right], idx[1:][down]])
    graph = coo_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(h * w, h * w))
    return connected_components(graph, directed=False)[1].reshape(h, w) + 1


@pytest.mark.parametrize("with_cut", [False, True])
def test_linked_components_are_the_link_graphs_components(with_cut: bool) -> None:
    from layerbridge.engines.classic.regions import link_components

    rng = np.random.default_rng(int(with_cut))
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        rgb8 = (rng.integers(0, 6, (h, w, 3)) * int(rng.integers(1, 4))).astype(np.uint8)
        cut = rng.random((h, w)) < 0.2 if with_cut else None
        comp = link_components(rgb8, cut)
        expected = _components_of_the_link_graph(rgb8, cut)
        np.testing.assert_array_equal(comp.labels, expected)
        assert comp.count == expected.max()
