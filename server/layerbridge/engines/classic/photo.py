"""Photo path: a subject cut-out for images that are not flat designs.

Few flat pixels and no background field: the subject is found by GrabCut on a small proxy
(<= 320 px), seeded by a centre rectangle, then its edge is refined by closed-form matting
(pymatting) on a narrow band at full size when pymatting is installed. This is the weakest
path: the cut-out is usable, the plate under a large subject is blurry.
"""

from __future__ import annotations

import cv2
import numpy as np

from layerbridge.engines.classic.regions import Element

_PROXY = 320
_BAND = 6


def subject_mask(rgb8: np.ndarray) -> np.ndarray | None:
    """Boolean subject mask at full size, or None when GrabCut finds nothing sensible."""
    h, w = rgb8.shape[:2]
    if min(h, w) < 16:
        return None
    scale = min(1.0, _PROXY / max(h, w))
    small = cv2.resize(rgb8, (max(int(w * scale), 8), max(int(h * scale), 8)),
                       interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    rect = (int(sw * 0.1), int(sh * 0.1), max(int(sw * 0.8), 1), max(int(sh * 0.8), 1))
    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, rect, bgd, fgd, 4,
                cv2.GC_INIT_WITH_RECT)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    share = fg.mean()
    if share < 0.02 or share > 0.9:
        return None
    big = cv2.resize(fg * 255, (w, h), interpolation=cv2.INTER_LINEAR)
    return big >= 128


def matte(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Soft alpha for ``mask``: closed-form matting on a band around its edge (box only)."""
    alpha = mask.astype(np.float64)
    kernel = np.ones((2 * _BAND + 1, 2 * _BAND + 1), np.uint8)
    m8 = mask.astype(np.uint8)
    unknown = (cv2.dilate(m8, kernel) - cv2.erode(m8, kernel)).astype(bool)
    try:
        from pymatting import estimate_alpha_cf
    except ImportError:
        return cv2.GaussianBlur(alpha, (0, 0), 1.0)
    ys, xs = np.nonzero(unknown)
    if ys.size == 0:
        return alpha
    y0, y1 = max(ys.min() - 2, 0), ys.max() + 3
    x0, x1 = max(xs.min() - 2, 0), xs.max() + 3
    trimap = alpha[y0:y1, x0:x1].copy()
    trimap[unknown[y0:y1, x0:x1]] = 0.5
    alpha[y0:y1, x0:x1] = estimate_alpha_cf(rgb[y0:y1, x0:x1], trimap)
    return np.clip(alpha, 0.0, 1.0)


def subject_element(mask: np.ndarray) -> Element:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Element((int(y0), int(y1), int(x0), int(x1)), mask[y0:y1, x0:x1].copy(), None,
                   "texture")
