"""Background model: the colour field behind every element.

Designs put their elements on a flat colour or a smooth gradient. A quadratic colour field
fitted to the largest border-touching region models both; the peel uses it to fill the plate
under removed elements, and pixels it explains are background, not elements. Where the page
drifts a few levels from any quadratic (a gradient of another shape, a radial glow, a scan),
a smooth correction measured on the page itself follows it: without it, page pixels at the
edge of the tolerance became parts of elements, as halos round them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from layerbridge.engines.classic.color import channel_max, color_distance
from layerbridge.engines.classic.tuning import TUNING


@dataclass(frozen=True)
class Background:
    """A quadratic colour field ``rgb = basis(x, y) @ coef`` plus the page's slow drift from
    it; ``ok`` says whether it fits."""

    coef: np.ndarray  # (6, 3)
    inliers: float  # share of the seed explained within TUNING.pixel_tol
    width: int
    height: int
    #: The drift, per cell of ``cell`` x ``cell`` pixels (rows, columns, 3); None: none.
    drift: np.ndarray | None = None
    cell: int = 1

    @property
    def ok(self) -> bool:
        return self.inliers >= TUNING.min_inliers

    def render(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Field colour at pixel coordinates ``ys``, ``xs`` (equal shapes) -> (..., 3)."""
        field = self._quadratic(ys, xs)
        if self.drift is not None:
            field += self.drift[self._cells(ys, 0), self._cells(xs, 1)]
        return np.clip(field, 0.0, 1.0, out=field)

    def render_box(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Field colour over a box -> (y1 - y0, x1 - x0, 3): :meth:`render` of its rows
        against its columns, with the drift taken rows first, then columns (one fancy index
        over both took five times as long)."""
        rows, cols = np.arange(y0, y1), np.arange(x0, x1)
        field = self._quadratic(rows[:, None], cols[None, :])
        if self.drift is not None:
            field += np.take(np.take(self.drift, self._cells(rows, 0), axis=0),
                             self._cells(cols, 1), axis=1)
        return np.clip(field, 0.0, 1.0, out=field)

    def _quadratic(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """The quadratic at ``ys``, ``xs`` (broadcast) -> (..., 3), summed from a part along
        v, a part along u and their cross term: on a box's rows against its columns only
        the sum is per pixel (building the six terms for every pixel took three times as
        long, and a full frame was a tenth of the engine's time)."""
        u, v = _centred(ys, xs, self.width, self.height)
        c = self.coef
        along_v = c[0] + v[..., None] * c[2] + (v * v)[..., None] * c[5]
        along_u = u[..., None] * c[1] + (u * u)[..., None] * c[3]
        return along_v + along_u + v[..., None] * (u[..., None] * c[4])

    def _cells(self, coords: np.ndarray, axis: int) -> np.ndarray:
        assert self.drift is not None
        return np.minimum(coords // self.cell, self.drift.shape[axis] - 1)


def _centred(ys: np.ndarray, xs: np.ndarray, width: int, height: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates as the field's coordinates: u across, v down, each -0.5 to 0.5."""
    u = xs.astype(np.float64) / max(width - 1, 1) - 0.5
    v = ys.astype(np.float64) / max(height - 1, 1) - 0.5
    return u, v


def _basis(ys: np.ndarray, xs: np.ndarray, width: int, height: int) -> np.ndarray:
    """The quadratic's six terms (1, u, v, u², uv, v²) per sample, for fitting the field."""
    u, v = _centred(ys, xs, width, height)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def fit_background(rgb: np.ndarray, seed: np.ndarray, rng: np.random.Generator) -> Background:
    """Fit the field to (a subsample of) the pixels of boolean mask ``seed``.

    Robust rounds: each refits on the pixels the previous field explained, so edge pixels
    and leaked-in panels inside the seed do not bend the field.
    """
    h, w = rgb.shape[:2]
    ys, xs = np.nonzero(seed)
    if ys.size == 0:
        ys, xs = np.nonzero(np.ones((h, w), bool))
    if ys.size > TUNING.background_samples:
        pick = rng.choice(ys.size, TUNING.background_samples, replace=False)
        ys, xs = ys[pick], xs[pick]
    basis, target = _basis(ys, xs, w, h), rgb[ys, xs].astype(np.float64)
    coef = _least_squares(basis, target)
    for quantile in (0.5, None):
        resid = np.abs(basis @ coef - target).max(axis=1)
        keep = resid <= (np.quantile(resid, quantile) if quantile else TUNING.pixel_tol) + 1e-9
        if keep.sum() >= 6:
            coef = _least_squares(basis[keep], target[keep])
    inliers = float((np.abs(basis @ coef - target).max(axis=1) <= TUNING.pixel_tol).mean())
    field = Background(coef=coef, inliers=inliers, width=w, height=h)
    return _with_drift(field, rgb, seed) if field.ok else field


def _least_squares(basis: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The coefficients that fit ``target`` best from ``basis``, by the normal equations.

    Over coordinates centred on the canvas the six terms are well conditioned, and their
    6x6 system costs a quarter of a factorisation of every sample (0.23 against 0.94 ms at
    10,000 samples on one BLAS thread, as the workers run; a job fits three times or
    more). The 6x6 system is solved by least squares too, so that a seed too thin to tell
    every term apart (one row of pixels) still gets the smallest fit, not an arbitrary
    one."""
    return np.linalg.lstsq(basis.T @ basis, basis.T @ target, rcond=None)[0]


def _with_drift(field: Background, rgb: np.ndarray, seed: np.ndarray) -> Background:
    """``field`` with the page's drift from it: the mean difference of the seed's pixels
    within TUNING.drift_sample of the field, per cell, filled in where the page is hidden,
    smoothed and bounded by TUNING.drift_max. Only pixels close to the field take part, so
    a panel that the seed reached through a soft shadow does not pull the page to it."""
    from layerbridge.engines.classic.fill import push_pull  # fill builds on this module

    h, w = rgb.shape[:2]
    cell = max(1, min(h, w) // TUNING.drift_cells)
    size = (max(1, w // cell), max(1, h // cell))
    # About four pixels a cell are enough, and cost a sixteenth of all of them.
    step = max(1, cell // 2)
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    off = (rgb[::step, ::step] - field.render(ys, xs)).astype(np.float32)
    near = (seed[::step, ::step] & (channel_max(np.abs(off)) <= TUNING.drift_sample))
    near = near.astype(np.float32)
    total = cv2.resize(off * near[..., None], size, interpolation=cv2.INTER_AREA)
    weight = cv2.resize(near, size, interpolation=cv2.INTER_AREA)
    known = weight > 0.5
    if not known.any():
        return field
    mean = total / np.maximum(weight, 1e-6)[..., None]
    width = max(3, int(min(size) * TUNING.drift_smooth) | 1)
    drift = cv2.blur(push_pull(mean, known).astype(np.float32), (width, width))
    drift = np.clip(drift.reshape(size[1], size[0], 3), -TUNING.drift_max, TUNING.drift_max)
    return replace(field, drift=drift, cell=cell)


def background_mask(rgb: np.ndarray, bg: Background, origin: tuple[int, int] = (0, 0),
                    tol: float | None = None) -> np.ndarray:
    """Pixels of ``rgb`` (the image, or its crop whose top-left is ``origin``) that the
    field explains to within ``tol`` (TUNING.pixel_tol unless given)."""
    tol = TUNING.pixel_tol if tol is None else tol
    h, w = rgb.shape[:2]
    y0, x0 = origin
    field = bg.render_box(y0, y0 + h, x0, x0 + w)
    return color_distance(rgb, field) <= tol
