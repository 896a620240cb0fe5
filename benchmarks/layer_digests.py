"""Layer digests through the real server: a refactor must leave every one unchanged.

Decomposes the seven PSDs in tests/data/psd (their composites) and the synthetic designs of
seeds 0-5 with the classic engine, "auto" and 3 layers, over a real websocket, and records
each layer message the server sends (name, place, size, sha256 of its pixels) and the
``done`` message without its timings.

    python benchmarks/layer_digests.py --record before.json   # on the old code
    python benchmarks/layer_digests.py --check before.json    # on the new code: exit 1 on change

``--psd DIR --only NAME...`` adds documents of another folder (e.g. the development set,
../shared/testdata/psd-dev), "auto" only, their truths decoded through bench_quality's cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from layerd_metric import read_psd_layers  # noqa: E402
from synthetic import design  # noqa: E402

from layerbridge.client import Client  # noqa: E402
from layerbridge.engines.classic import ClassicEngine  # noqa: E402
from layerbridge.server import LayerBridgeServer, ServerConfig  # noqa: E402
from tests.helpers import image_input  # noqa: E402

PSDS = ROOT / "tests" / "data" / "psd"
SEEDS = range(6)
LAYER_COUNTS: tuple[int | str, ...] = ("auto", 3)


def documents(extra: list[Path], only: list[str]) -> dict[str, np.ndarray]:
    """Every input image by a stable name: the PSDs' composites, then the synthetic seeds,
    then the documents of ``extra`` folders whose names contain one of ``only``."""
    from bench_quality import CACHE, truth
    from bench_quality import documents as folder_documents
    from layerd_metric import composite

    images: dict[str, np.ndarray] = {}
    for path in sorted(PSDS.glob("*.psd")):
        _, total = read_psd_layers(path)
        images[path.name] = np.clip(np.rint(total * 255), 0, 255).astype(np.uint8)
    for seed in SEEDS:
        images[f"synthetic-{seed}"] = design(seed, 480, 360)[1]
    for path, _, _ in folder_documents(extra, only) if extra else ():
        patches, height, width = truth(path, CACHE)
        images[path.name] = composite(patches, height, width)
    return images


def digests(extra: list[Path], only: list[str]) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = LayerBridgeServer(ClassicEngine(), ServerConfig(port=0))
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    record: dict[str, Any] = {}
    synthetic_or_tests = {p.name for p in PSDS.glob("*.psd")} | {f"synthetic-{s}" for s in SEEDS}
    try:
        with Client(server.url, "digests") as client:
            for name, pixels in documents(extra, only).items():
                for layers in LAYER_COUNTS if name in synthetic_or_tests else ("auto",):
                    result = client.run("decompose", {"layers": layers}, [image_input(pixels)])
                    assert result.done is not None
                    done = {k: v for k, v in result.done.items() if k not in ("timings", "job")}
                    record[f"{name} layers={layers}"] = {
                        "layers": [
                            {k: v for k, v in m.items() if k not in ("data", "job")}
                            for m in result.layers
                        ],
                        "done": done,
                    }
                    print(f"{name} layers={layers}: {len(result.layers)} layers", flush=True)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--record", type=Path, help="write the digests to this JSON file")
    action.add_argument("--check", type=Path, help="compare with digests recorded earlier")
    parser.add_argument("--psd", nargs="*", type=Path, default=[], help="more folders of PSDs")
    parser.add_argument("--only", nargs="*", default=[], help="their names containing any")
    args = parser.parse_args()
    now = digests(args.psd, args.only)
    if args.record:
        args.record.write_text(json.dumps(now, indent=1, sort_keys=True))
        print(f"recorded {sum(len(v['layers']) for v in now.values())} layers to {args.record}")
        return 0
    before = json.loads(args.check.read_text())
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for key in changed:
        print(f"CHANGED: {key}")
    total = sum(len(v["layers"]) for v in now.values())
    print(f"{len(now)} jobs, {total} layers: {len(changed)} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
