"""Decomposition quality on real layered documents, through the real server on loopback.

For every ``.psd`` / ``.psd.gz`` in the folders given, the over-composite of its visible layers
is decomposed by a ``layerbridge serve`` process (the classic engine unless ``--engine``) and the
layers that come back are scored against the true ones with the LayerD metric
(tests/layerd_metric.py). Per file: layers predicted/true, L1 and IoU at 0, 1 and 2 merges, the
largest recomposite error (levels, both flattened on white), seconds per megapixel (timed
in runs of their own, the median of three for a job under a second: see ``timed``) and the
peak memory of the server and its worker processes over their resting size (sampled). Then
the means: designs apart from photos (a folder README's "Photo" section), files flagged as
not quite reproducing their picture (a ⚠ in their README row) apart.

Run (long on a small machine; decoded truths are cached):
    python benchmarks/bench_quality.py ../shared/testdata/psd-dev tests/data/psd \\
        --json before.json --markdown before.md [--only NAME ...] [--max-mp 4]
    python benchmarks/bench_quality.py --compare before.json after.json
    python benchmarks/bench_quality.py --report before.json --levels
    python benchmarks/bench_quality.py ../shared/testdata/psd-dev tests/data/psd \\
        --ceiling before.json

``--ceiling RESULTS.json`` runs no decomposition: per document it scores the pixel ceiling
(layerd_metric.pixel_ceiling: the truth cut to what its picture shows, its background
whole) and prints it beside the results' scores: how far finding the visible elements
alone could go, file by file, and what only guessing hidden or invisible parts could add.

``--levels`` adds where each true depth level is seen in the prediction: the content a
prediction leaves in its background and the background it lifts out, per file and over the
designs (the metric's score at 0 merges hangs on these levels).

A transparent document is scored, as LayerD does, against its true layers over white, but
decomposed as it is: transparency kept, its bottom layer cannot match that white. With
``--on-white`` it is decomposed flattened on white instead, as LayerD's models see it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import image_input, layer_pixels  # noqa: E402
from layerd_metric import (  # noqa: E402
    Patch,
    composite,
    evaluate_patches,
    level_map,
    pixel_ceiling,
    read_psd_crops,
)

from layerbridge.client import Client  # noqa: E402
from layerbridge.engines.diffusion.planner import host_ram_gib  # noqa: E402

MERGES = 2
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "layerbridge-bench"


@dataclass
class Row:
    """One document's result."""

    name: str
    kind: str  # design | photo
    flagged: bool
    width: int
    height: int
    true_layers: int
    pred_layers: int = 0
    l1: tuple[float, ...] = ()
    iou: tuple[float, ...] = ()
    recomposite: float = 0.0  # largest error, 0..255 levels
    # Occlusion depth as the metric groups it (the truth over white where it is scored so).
    pred_levels: int = 0
    true_levels: int = 0
    #: Per true level: (area, visible share, share of what is seen per predicted level);
    #: see layerd_metric.level_map.
    level_map: tuple[tuple[float, float, tuple[float, ...]], ...] = ()
    seconds: float = 0.0
    peak_mb: float = 0.0
    error: str = ""
    #: IoU at 0..MERGES merges of the truth's pixel ceiling (``--ceiling``).
    ceiling: tuple[float, ...] = ()

    @property
    def mp(self) -> float:
        return self.width * self.height / 1e6


# --- the documents ---------------------------------------------------------------------


def documents(folders: list[Path], only: list[str]) -> list[tuple[Path, str, bool]]:
    """(path, kind, flagged) for every document in ``folders``, by name."""
    out = []
    for folder in folders:
        notes = _readme_notes(folder / "README.md")
        for path in sorted(folder.iterdir()):
            if not (path.name.endswith(".psd") or path.name.endswith(".psd.gz")):
                continue
            if only and not any(part in path.name for part in only):
                continue
            kind, flagged = notes.get(path.name, ("design", False))
            out.append((path, kind, flagged))
    return out


def _readme_notes(readme: Path) -> dict[str, tuple[str, bool]]:
    """File name -> (kind, flagged) from a README's tables: rows under a heading that names
    photos are photos; a ⚠ in a row flags the file."""
    notes: dict[str, tuple[str, bool]] = {}
    if not readme.exists():
        return notes
    kind = "design"
    for line in readme.read_text().splitlines():
        if line.startswith("#"):
            kind = "photo" if "photo" in line.lower() else "design"
        elif line.startswith("| ") and ".psd" in line.split("|")[1]:
            notes[line.split("|")[1].strip()] = (kind, "⚠" in line)
    return notes


def truth(path: Path, cache: Path) -> tuple[list[Patch], int, int]:
    """The true layers as patches, decoded once and cached (psd-tools is slow on big files)."""
    stored = cache / (path.name + ".npz")
    if stored.exists() and stored.stat().st_mtime >= path.stat().st_mtime:
        with np.load(stored) as data:
            height, width = (int(v) for v in data["size"])
            places = data["places"]
            crops = [(data[f"l{i}"], int(x), int(y)) for i, (x, y) in enumerate(places)]
    else:
        crops, height, width = read_psd_crops(path)
        cache.mkdir(parents=True, exist_ok=True)
        arrays = {f"l{i}": pixels for i, (pixels, _, _) in enumerate(crops)}
        np.savez_compressed(stored, size=np.array([height, width]),
                            places=np.array([(x, y) for _, x, y in crops]).reshape(-1, 2),
                            **arrays)
    return [Patch.from_crop(p, x, y, height, width) for p, x, y in crops], height, width


# --- the server ------------------------------------------------------------------------


class Server:
    """A ``layerbridge serve`` child process on a free loopback port."""

    def __init__(self, engine: str, output_dir: Path, code: Path | None = None) -> None:
        """``code``: a folder holding another ``layerbridge`` package to serve instead."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if code is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "layerbridge.cli", "--log-level", "warning", "serve", "--port",
             "0", "--engine",
             engine, "--output-dir", str(output_dir), "--max-pixels", str(64 * 2**20),
             "--memory-budget", str(_budget_mib())],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "ws://127.0.0.1:" not in line:
            self.process.kill()
            raise SystemExit(f"the server did not start: {line!r}")
        self.url = line.split()[-1]

    def tree_mb(self) -> float:
        """Proportional resident size (PSS) of the server and all its descendants, in MB:
        the classic engine decomposes in a child process, and children share pages with
        their parent that must be counted once."""
        total = 0.0
        for pid in _descendants(self.process.pid):
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:  # it ended meanwhile
                continue
            for line in text.splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _budget_mib() -> int:
    """Three quarters of this machine's available memory: a large document is decomposed as
    far as the machine can hold it, not refused at the server's default budget (4 GiB: about
    16.8 megapixels on the classic engine; an A3 poster at 300 dpi is 17.4)."""
    return max(4096, int(host_ram_gib() * 1024 * 3 / 4))  # 0 where unknown: the default


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


class PeakSampler(threading.Thread):
    """Samples the server tree's memory every 50 ms while a job runs; keeps the largest
    and the smallest."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.done = server, threading.Event()
        self.peak, self.low = 0.0, float("inf")

    def run(self) -> None:
        while not self.done.wait(0.05):
            size = self.server.tree_mb()
            self.peak, self.low = max(self.peak, size), min(self.low, size)


def decompose(server: Server, client: Client, pixels: np.ndarray, layers: int | str = "auto"
              ) -> tuple[list[Patch], float]:
    """(predicted patches, peak MB over the resting size) of one job, its memory sampled."""
    height, width = pixels.shape[:2]
    rest = server.tree_mb()
    sampler = PeakSampler(server)
    sampler.start()
    try:
        result = client.run("decompose", {"layers": layers}, [image_input(pixels)])
    finally:
        sampler.done.set()
        sampler.join()
    # Over the smallest the tree was around the job: a warm worker that grew in the last
    # job may be replaced by a fresh one during this one, leaving the tree below ``rest``.
    peak = max(sampler.peak - min(rest, sampler.low), 0.0)
    return [Patch.from_crop(layer_pixels(m), m["x"], m["y"], height, width)
            for m in result.layers], peak


#: A job shorter than this (seconds) is timed three times, and the median taken.
SHORT_JOB_S = 1.0


def timed(client: Client, pixels: np.ndarray, layers: int | str = "auto") -> float:
    """Seconds one job takes, with no memory sampler running: reading the server tree's
    memory every 50 ms costs 12 ms a time and slowed jobs by about 7%. A short job is timed
    three times and the median taken: on a busy two-core machine one hiccup of a few tens of
    milliseconds doubled the seconds per megapixel of a 100x100 document."""
    runs = [_time_one(client, pixels, layers)]
    if runs[0] < SHORT_JOB_S:
        runs += [_time_one(client, pixels, layers) for _ in range(2)]
    return statistics.median(runs)


def _time_one(client: Client, pixels: np.ndarray, layers: int | str) -> float:
    start = time.perf_counter()
    client.run("decompose", {"layers": layers}, [image_input(pixels)])
    return time.perf_counter() - start


def on_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return rgba[..., :3] * a + 255.0 * (1.0 - a)


def measure(server: Server, client: Client, path: Path, kind: str, flagged: bool,
            cache: Path, max_mp: float | None = None, layers: str = "auto",
            on_white_input: bool = False) -> Row | None:
    """The document's row, or None when it is larger than ``max_mp`` megapixels.
    ``layers``: "auto", a count, or "true" to ask for the document's own layer count (how
    well ``layers: N`` merges), up to the server's maximum. ``on_white_input``: decompose
    the document flattened on white (the picture the metric's reference is, as LayerD
    renders it) rather than its own transparent composite."""
    true, height, width = truth(path, cache)
    row = Row(path.name, kind, flagged, width, height, len(true))
    if max_mp is not None and row.mp > max_mp:
        return None
    pixels = composite(true, height, width)
    if on_white_input:
        flat = np.rint(on_white(pixels)).astype(np.uint8)
        pixels = np.concatenate([flat, np.full((height, width, 1), 255, np.uint8)], -1)
    try:
        asked: int | str = layers if not layers.isdigit() else int(layers)
        if layers == "true":
            asked = min(len(true), client.welcome["capabilities"]["layers"]["max"])
        pred, row.peak_mb = decompose(server, client, pixels, asked)
        row.seconds = timed(client, pixels, asked)
    except Exception as exc:  # a failed job is a result of the benchmark, not its end
        row.error = f"{type(exc).__name__}: {exc}"
        return row
    row.pred_layers = len(pred)
    # The level map groups both stacks into depth levels already: their counts come with it.
    row.level_map = tuple((t.area, t.visible, t.found_in)
                          for t in level_map(pred, true, height, width))
    row.true_levels = len(row.level_map)
    row.pred_levels = len(row.level_map[0][2])
    back = composite(pred, height, width)
    row.recomposite = float(np.abs(on_white(back) - on_white(pixels)).max())
    scores = evaluate_patches(pred, true, height, width, MERGES)
    row.l1 = tuple(round(s.l1, 4) for s in scores)
    row.iou = tuple(round(s.iou, 4) for s in scores)
    return row


# --- the report ------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = " | ".join(f"L1/IoU {k}m" for k in range(MERGES + 1))
    lines = [f"| file | kind | layers pred/true | levels pred/true | {head} | recomp | s/MP "
             "| peak MB (MB/MP) |",
             "|---|---|---|---|" + "---|" * (MERGES + 1) + "---|---|---|"]
    for r in rows:
        kind = r.kind + (" ⚠" if r.flagged else "")
        if r.error:
            lines.append(f"| {r.name} | {kind} | FAILED: {r.error} |")
            continue
        cells = " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(r.l1, r.iou, strict=True))
        lines.append(
            f"| {r.name} | {kind} | {r.pred_layers}/{r.true_layers} | "
            f"{r.pred_levels}/{r.true_levels} | {cells} | "
            f"{r.recomposite:.0f} | {r.seconds / r.mp:.2f} | "
            f"{r.peak_mb:.0f} ({r.peak_mb / r.mp:.0f}) |"
        )
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """Means per group and the acceptance figures. Memory per megapixel is taken over
    documents of at least half a megapixel: a job's fixed cost (its worker process, ~20 MB)
    says nothing per megapixel of a 100x100 logo."""
    ok = [r for r in rows if not r.error]
    groups = {
        "designs (all)": [r for r in ok if r.kind == "design"],
        "designs, clean": [r for r in ok if r.kind == "design" and not r.flagged],
        "designs, flagged ⚠": [r for r in ok if r.kind == "design" and r.flagged],
        "photos": [r for r in ok if r.kind == "photo"],
    }
    lines = ["| group | files | " + " | ".join(f"IoU {k}m" for k in range(MERGES + 1))
             + " | L1 0m | median s/MP | max s/MP | max MB/MP (>= 0.5 MP) |",
             "|---|---|" + "---|" * (MERGES + 1) + "---|---|---|---|"]
    for label, group in groups.items():
        if not group:
            continue
        ious = " | ".join(f"{np.mean([r.iou[k] for r in group]):.3f}" for k in range(MERGES + 1))
        speed = [r.seconds / r.mp for r in group]
        lines.append(
            f"| {label} | {len(group)} | {ious} | {np.mean([r.l1[0] for r in group]):.3f} | "
            f"{statistics.median(speed):.2f} | {max(speed):.2f} | "
            f"{max((r.peak_mb / r.mp for r in group if r.mp >= 0.5), default=0):.0f} |"
        )
    designs = groups["designs (all)"]
    collapsed = [r.name for r in designs if r.true_layers >= 4 and r.pred_layers < 3]
    shallow = [r for r in designs if r.pred_levels < r.true_levels]
    lines += [
        "",
        f"failed jobs: {len(rows) - len(ok)}; largest recomposite error: "
        f"{max((r.recomposite for r in ok), default=0):.0f} levels",
        f"designs with >= 4 true layers returned as < 3: {len(collapsed)} "
        f"{', '.join(collapsed)}",
        f"designs with fewer depth levels than their truth: {len(shallow)} of {len(designs)} "
        f"(short by {sum(r.true_levels - r.pred_levels for r in shallow)} levels in all)",
    ]
    mapped = [r for r in designs if r.level_map]
    if mapped:
        left, lifted = zip(*(depth_errors(r) for r in mapped), strict=True)
        lines.append(f"designs' seen content left in the predicted background: "
                     f"{np.mean(left):.3f}; seen background lifted out of it: "
                     f"{np.mean(lifted):.3f} (means over {len(mapped)} files)")
    return "\n".join(lines)


def depth_errors(row: Row) -> tuple[float, float]:
    """(share of the truth's seen content that the prediction keeps in its bottom level,
    share of the truth's seen background that it lifts into upper levels). The truth's
    background is its bottom run of levels covering the whole canvas (white put under it,
    a full-bleed page); its content is every level above."""
    background = 0
    while background < len(row.level_map) and row.level_map[background][0] >= 0.99:
        background += 1
    background = max(background, 1)
    sums = np.zeros((2, 2))  # [background, content] x [seen, seen in the predicted bottom]
    for index, (area, visible, found_in) in enumerate(row.level_map):
        seen = area * visible
        sums[int(index >= background)] += (seen, seen * found_in[0])
    lifted = 1.0 - sums[0, 1] / sums[0, 0] if sums[0, 0] > 0 else 0.0
    left = sums[1, 1] / sums[1, 0] if sums[1, 0] > 0 else 0.0
    return float(left), float(lifted)


def level_table(rows: list[Row]) -> str:
    """Per document, each true level (bottom first): its area and visible share, and the
    share of what is seen in each predicted level: where the depth went."""
    lines = ["| file | levels pred/true | left in background / lifted | true level: area, "
             "seen -> share of what is seen per predicted level |", "|---|---|---|---|"]
    for r in rows:
        if r.error or not r.level_map:
            continue
        left, lifted = depth_errors(r)
        levels = "; ".join(f"L{k} {area:.2f}, {visible:.2f} -> "
                           + "/".join(f"{x:.2f}" for x in found)
                           for k, (area, visible, found) in enumerate(r.level_map))
        lines.append(f"| {r.name} | {r.pred_levels}/{r.true_levels} | {left:.2f} / "
                     f"{lifted:.2f} | {levels} |")
    return "\n".join(lines)


def compare(before: list[Row], after: list[Row]) -> str:
    """Per-file IoU at 0 and 2 merges before and after, and the design means."""
    old = {r.name: r for r in before if not r.error}
    lines = ["| file | IoU 0m before -> after | IoU 2m before -> after | layers |",
             "|---|---|---|---|"]
    pairs = [(old[r.name], r) for r in after if r.name in old and not r.error]
    for a, b in pairs:
        lines.append(f"| {b.name} | {a.iou[0]:.3f} -> {b.iou[0]:.3f} | "
                     f"{a.iou[-1]:.3f} -> {b.iou[-1]:.3f} | {a.pred_layers} -> {b.pred_layers} |")
    designs = [(a, b) for a, b in pairs if b.kind == "design"]
    if designs:
        for k in (0, MERGES):
            lines.append(f"\ndesign mean IoU at {k} merges: "
                         f"{np.mean([a.iou[k] for a, _ in designs]):.4f} -> "
                         f"{np.mean([b.iou[k] for _, b in designs]):.4f} ({len(designs)} files)")
    return "\n".join(lines)


def add_ceilings(rows: list[Row], folders: list[Path], cache: Path) -> list[Row]:
    """``rows`` (of a results file) with the pixel ceiling of each document found in
    ``folders``; rows of documents not found are left out."""
    by_name = {r.name: r for r in rows if not r.error}
    out = []
    for path, _, _ in documents(folders, []):
        row = by_name.get(path.name)
        if row is None:
            continue
        true, height, width = truth(path, cache)
        scores = evaluate_patches(pixel_ceiling(true, height, width), true, height, width,
                                  MERGES)
        row.ceiling = tuple(round(s.iou, 4) for s in scores)
        out.append(row)
        print(f"{row.name}: ceiling IoU " + " / ".join(f"{x:.3f}" for x in row.ceiling),
              flush=True)
    return out


def ceiling_table(rows: list[Row]) -> str:
    """Per document and over the designs: the results' IoU, the pixel ceiling's, and the
    headroom between them at 0 merges."""
    marks = " / ".join(f"{k}m" for k in range(MERGES + 1))
    lines = [f"| file | kind | IoU {marks} | ceiling {marks} | headroom 0m |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.kind} | " + " / ".join(f"{x:.3f}" for x in r.iou)
                     + " | " + " / ".join(f"{x:.3f}" for x in r.ceiling)
                     + f" | {r.ceiling[0] - r.iou[0]:+.3f} |")
    designs = [r for r in rows if r.kind == "design"]
    if designs:
        ours = " / ".join(f"{np.mean([r.iou[k] for r in designs]):.3f}"
                          for k in range(MERGES + 1))
        best = " / ".join(f"{np.mean([r.ceiling[k] for r in designs]):.3f}"
                          for k in range(MERGES + 1))
        lines.append(f"\ndesigns ({len(designs)}): mean IoU {ours}; pixel ceiling {best}")
    return "\n".join(lines)


def blur_ms_per_mp() -> float:
    """A full-frame 15x15 box blur, in ms per megapixel: the machine's speed at the moment,
    to read the s/MP figures against (they move with the load of a shared machine)."""
    import cv2

    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
    start = time.perf_counter()
    for _ in range(10):
        cv2.blur(image, (15, 15))
    return (time.perf_counter() - start) / 10 / 1.048576 * 1000


def load_rows(path: Path) -> list[Row]:
    return [Row(**{**raw, "l1": tuple(raw["l1"]), "iou": tuple(raw["iou"]),
                   "level_map": tuple((a, v, tuple(f)) for a, v, f in raw.get("level_map", ())),
                   "ceiling": tuple(raw.get("ceiling", ()))})
            for raw in json.loads(path.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--only", nargs="*", default=[], help="names containing any of these")
    parser.add_argument("--max-mp", type=float, default=None, help="skip larger documents")
    parser.add_argument("--engine", default="classic")
    parser.add_argument("--layers", default="auto",
                        help='"auto", a count, or "true": each document\'s own layer count')
    parser.add_argument("--on-white", action="store_true",
                        help="decompose each document flattened on white, as the metric's "
                        "reference is rendered, not its own (maybe transparent) composite")
    parser.add_argument("--cache", type=Path, default=CACHE, help="decoded true layers")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="compare two --json files instead of running")
    parser.add_argument("--report", nargs="+", type=Path, metavar="JSON",
                        help="print the tables of --json files (runs split in parts) instead")
    parser.add_argument("--levels", action="store_true",
                        help="add a table of where each true depth level is seen in the "
                        "prediction (content left in the background, background lifted)")
    parser.add_argument("--ceiling", type=Path, metavar="RESULTS_JSON",
                        help="decompose nothing: score each document's pixel ceiling and "
                        "print it beside these results")
    args = parser.parse_args()
    if args.ceiling:
        rows = add_ceilings(load_rows(args.ceiling), args.folders, args.cache)
        report = ceiling_table(rows)
        print("\n" + report)
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
        if args.markdown:
            args.markdown.write_text(report + "\n")
        return
    if args.compare:
        print(compare(load_rows(args.compare[0]), load_rows(args.compare[1])))
        return
    if args.report:
        merged = {r.name: r for path in args.report for r in load_rows(path)}
        rows = sorted(merged.values(), key=lambda r: r.name)
        print(table(rows) + "\n\n" + summary(rows)
              + ("\n\n" + level_table(rows) if args.levels else ""))
        return
    rows: list[Row] = []
    blur_before = blur_ms_per_mp()
    # A terminated benchmark still stops its server (the ``finally`` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as out:
        server = Server(args.engine, Path(out))
        try:
            with Client(server.url, "bench-quality") as client:
                for path, kind, flagged in documents(args.folders, args.only):
                    row = measure(server, client, path, kind, flagged, args.cache, args.max_mp,
                                  args.layers, args.on_white)
                    if row is None:
                        continue
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
                    if args.json:
                        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
        finally:
            server.stop()
    report = (table(rows) + "\n\n" + summary(rows) + f"\nmachine baseline (15x15 box blur): "
              f"{blur_before:.1f} ms/MP at the start, {blur_ms_per_mp():.1f} at the end")
    if args.levels:
        report += "\n\n" + level_table(rows)
    print("\n" + report)
    if args.markdown:
        args.markdown.write_text(report + "\n")


if __name__ == "__main__":
    main()
