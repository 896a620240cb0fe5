"""Classic engine speed, in seconds per megapixel, as ratios against the 1 s/MP target.

Also prints, for reference, a full-frame 15x15 box blur timed in the same process (a
baseline that scales with the machine), and the quality table of tests/quality.py.
Run: python benchmarks/bench_classic.py [--no-quality]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic import design, photo_like  # noqa: E402

from layerbridge.engines.classic.decompose import decompose  # noqa: E402

TARGET_S_PER_MP = 1.0


def seconds_per_mp(images: list[np.ndarray]) -> float:
    total_s, total_mp = 0.0, 0.0
    for pixels in images:
        start = time.perf_counter()
        decompose(pixels)
        total_s += time.perf_counter() - start
        total_mp += pixels.shape[0] * pixels.shape[1] / 1e6
    return total_s / total_mp


def blur_s_per_mp() -> float:
    img = np.random.default_rng(0).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
    start = time.perf_counter()
    for _ in range(10):
        cv2.blur(img, (15, 15))
    return (time.perf_counter() - start) / 10 / 1.048576


def main() -> None:
    decompose(design(0, 64, 48)[1])  # warm imports
    designs = [design(seed, 1024, 768)[1] for seed in range(3)]
    photos = [photo_like(seed, 768, 1024) for seed in range(2)]
    blur = blur_s_per_mp()
    print(f"baseline: full-frame 15x15 box blur {blur * 1000:.1f} ms/MP")
    for label, images in (("designs (synthetic 1024x768)", designs),
                          ("photo-like (procedural 1024x768)", photos)):
        s = seconds_per_mp(images)
        print(f"{label}: {s:.2f} s/MP = {s / TARGET_S_PER_MP:.2f}x the 1 s/MP target "
              f"= {s / blur:.0f}x the blur")
    if "--no-quality" not in sys.argv:
        from quality import table

        print("\n" + table())


if __name__ == "__main__":
    main()
