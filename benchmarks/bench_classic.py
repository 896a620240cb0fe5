"""Classic engine speed in seconds per megapixel and peak memory in MB per megapixel.

Speed is given as ratios against the 1 s/MP target and against a full-frame 15x15 box blur
timed in the same process (a baseline that scales with the machine). Peak memory is the
growth of a fresh process's peak resident size over its size after warm-up, for one
decomposition, against the 200 MB/MP budget. Both are of ``decompose_pieces``, what the
server's worker runs (each layer over its own box, not as a full frame). Then the quality
table of tests/quality.py.
Run: python benchmarks/bench_classic.py [--no-quality] [--memory-only]

Against an earlier version, through real servers, on real documents:
    python benchmarks/bench_classic.py --against main ../shared/testdata/psd-dev tests/data/psd \
        [--only NAME ...] [--max-mp 4]
serves the ``server/`` of git revision ``main`` and of this checkout side by side and runs each
document on both in turn (alternating which goes first), so that both see the same load of a
shared machine (each timed as bench_quality.timed times it): per file s/MP before and after
and their ratio, then the medians and maxima.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import design, photo_like, spaced_capitals  # noqa: E402

from layerbridge.engines.classic.decompose import decompose_pieces  # noqa: E402

TARGET_S_PER_MP = 1.0
TARGET_MB_PER_MP = 200.0


def seconds_per_mp(images: list[np.ndarray]) -> float:
    total_s, total_mp = 0.0, 0.0
    for pixels in images:
        start = time.perf_counter()
        decompose_pieces(pixels)
        total_s += time.perf_counter() - start
        total_mp += pixels.shape[0] * pixels.shape[1] / 1e6
    return total_s / total_mp


def blur_s_per_mp() -> float:
    img = np.random.default_rng(0).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
    start = time.perf_counter()
    for _ in range(10):
        cv2.blur(img, (15, 15))
    return (time.perf_counter() - start) / 10 / 1.048576


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def glyph_page(side: int) -> np.ndarray:
    """About ``side`` x ``side`` of letter-spaced capitals, each glyph a block of its own
    (thousands at 1600): the blocks path joins them into lines."""
    return spaced_capitals((side - 40) // 24, side, step=24)[0]


def _sample(kind: str, side: int) -> np.ndarray:
    if kind == "photo":
        return photo_like(0, side, side)
    return glyph_page(side) if kind == "glyphs" else design(0, side, side)[1]


def _memory_child(kind: str, side: int) -> None:
    """In a fresh process: print the peak MB one decomposition adds over the warm size."""
    from layerbridge.engines.classic.engine import ClassicEngine

    ClassicEngine().warm_up()
    pixels = _sample(kind, side)
    decompose_pieces(_sample(kind, 96))
    rest = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak count from here
    decompose_pieces(pixels)
    print(_status_mb("VmHWM") - rest)


def memory_mb_per_mp(kind: str, side: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-child", kind, str(side)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1]) / (side * side / 1e6)


def memory() -> None:
    for kind, side in (("photo", 1024), ("photo", 2048), ("design", 2048), ("glyphs", 1600)):
        mb = memory_mb_per_mp(kind, side)
        print(f"peak memory, {kind}-like {side}x{side}: {mb:.0f} MB/MP = "
              f"{mb / TARGET_MB_PER_MP:.2f}x the {TARGET_MB_PER_MP:.0f} MB/MP budget", flush=True)


def against(argv: list[str]) -> None:
    """Per-file s/MP of git revision ``--against`` and of this checkout, through servers."""
    from bench_quality import CACHE, Server, documents, timed, truth
    from layerd_metric import composite

    from layerbridge.client import Client

    parser = argparse.ArgumentParser()
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--max-mp", type=float, default=None)
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    warm = design(0, 64, 48)[1]
    print(f"baseline: full-frame 15x15 box blur {blur_s_per_mp() * 1000:.1f} ms/MP", flush=True)
    print("| file | size | s/MP before | s/MP after | after/before |\n|---|---|---|---|---|")
    rows: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        old_code = Path(tmp) / "old"
        old_code.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", args.against, "server"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_code)], input=archive, check=True)
        old = Server("classic", Path(tmp), old_code / "server")
        new = Server("classic", Path(tmp))
        try:
            with Client(old.url, "before") as old_client, Client(new.url, "after") as new_client:
                timed(old_client, warm)
                timed(new_client, warm)
                for k, (path, _, _) in enumerate(documents(args.folders, args.only)):
                    patches, height, width = truth(path, CACHE)
                    mp = height * width / 1e6
                    if args.max_mp is not None and mp > args.max_mp:
                        continue
                    pixels = composite(patches, height, width)
                    pair = [old_client, new_client]
                    seconds = {id(c): timed(c, pixels) for c in pair[:: 1 - 2 * (k % 2)]}
                    before, after = seconds[id(old_client)] / mp, seconds[id(new_client)] / mp
                    rows.append((before, after))
                    print(f"| {path.name} | {width}x{height} | {before:.2f} | {after:.2f} | "
                          f"{after / before:.2f} |", flush=True)
        finally:
            old.stop()
            new.stop()
    if not rows:
        return
    before_all, after_all = [b for b, _ in rows], [a for _, a in rows]
    ratios = [a / b for b, a in rows]
    print(f"\n{len(rows)} files. median s/MP {statistics.median(before_all):.2f} -> "
          f"{statistics.median(after_all):.2f}; max s/MP {max(before_all):.2f} -> "
          f"{max(after_all):.2f}; after/before per file: median {statistics.median(ratios):.2f}, "
          f"geometric mean {float(np.exp(np.mean(np.log(ratios)))):.2f}, "
          f"worst {max(ratios):.2f}")
    print(f"baseline at the end: full-frame 15x15 box blur {blur_s_per_mp() * 1000:.1f} ms/MP")


def main() -> None:
    if "--against" in sys.argv:
        against(sys.argv[1:])
        return
    if "--memory-child" in sys.argv:
        at = sys.argv.index("--memory-child")
        _memory_child(sys.argv[at + 1], int(sys.argv[at + 2]))
        return
    memory()
    if "--memory-only" in sys.argv:
        return
    decompose_pieces(design(0, 64, 48)[1])  # warm imports
    designs = [design(seed, 1024, 768)[1] for seed in range(3)]
    photos = [photo_like(seed, 768, 1024) for seed in range(2)]
    glyphs = [glyph_page(1600)]
    blur = blur_s_per_mp()
    print(f"baseline: full-frame 15x15 box blur {blur * 1000:.1f} ms/MP")
    for label, images in (("designs (synthetic 1024x768)", designs),
                          ("photo-like (procedural 1024x768)", photos),
                          ("letter-spaced glyphs (1600x1600, blocks path)", glyphs)):
        s = seconds_per_mp(images)
        print(f"{label}: {s:.2f} s/MP = {s / TARGET_S_PER_MP:.2f}x the 1 s/MP target "
              f"= {s / blur:.0f}x the blur")
    if "--no-quality" not in sys.argv:
        from quality import table

        print("\n" + table())


if __name__ == "__main__":
    main()
