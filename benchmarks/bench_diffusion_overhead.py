"""Diffusion engine overhead: a decompose through the server vs the bare pipeline call.

Both sides run the tiny Qwen-Image-Layered pipeline in this process with the same image,
prompt, seed, layers and steps. The baseline calls the pipeline directly (PIL in, PIL out);
the measured side submits the job over a loopback websocket to the real server running the
tiny engine, which converts, reports progress per step, resizes back to the document size,
trims, hashes and streams the layers. Runs alternate so that machine load hits both alike;
the ratio of medians is what the engine and server add (aim: <= 1.05).

    python benchmarks/bench_diffusion_overhead.py [--size 256] [--layers 2] [--steps 4]
        [--repeat 5] [--ops]     (--ops also times each op on the engine directly)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerbridge.engines.base import InputImage, JobContext, JobRequest  # noqa: E402
from layerbridge.engines.diffusion import DiffusionEngine, to_rgba_pil  # noqa: E402
from layerbridge.server import ServerConfig  # noqa: E402
from tests.helpers import image_input, start_server, stop_server  # noqa: E402

PROMPT = "a poster with a red box"


def test_image(size: int) -> np.ndarray:
    image = np.full((size, size, 4), 220, np.uint8)
    image[size // 4:size // 2, size // 5:size // 2, :3] = (200, 30, 30)
    return image


#: One long-lived worker thread, as the server keeps one for its jobs. On the 2-core host torch
#: ran the same job 2-3x faster in a worker thread than in the main thread, and faster in a
#: warm thread than in a fresh one, so the baseline runs where the server's jobs run.
WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baseline")


def in_worker_thread(work: Callable[[], float]) -> float:
    return WORKER.submit(work).result()


def direct_call(engine: DiffusionEngine, image: np.ndarray, layers: int, steps: int) -> float:
    """The baseline: the pipeline alone, as a script using diffusers would call it."""
    import torch

    pipe = engine._pipeline("layered")

    def call() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            pipe(image=to_rgba_pil(image), prompt=PROMPT, negative_prompt=" ",
                 true_cfg_scale=4.0, layers=layers, resolution=640, num_inference_steps=steps,
                 cfg_normalize=True, use_en_prompt=True,
                 generator=torch.Generator().manual_seed(1))
        return time.perf_counter() - started

    return in_worker_thread(call)


def served_call(client, image: np.ndarray, layers: int, steps: int) -> float:
    started = time.perf_counter()
    result = client.run("decompose", {"layers": layers, "steps": steps, "seed": 1,
                                      "prompt": PROMPT}, [image_input(image)])
    elapsed = time.perf_counter() - started
    assert len(result.layers) == layers
    return elapsed


def time_ops(engine: DiffusionEngine, size: int, steps: int) -> None:
    """Seconds per op on the tiny engine (640 bucket unless said), for the record."""
    image = test_image(size)
    base = {"seed": 1, "steps": steps, "resolution": None, "negative_prompt": None,
            "guidance": None, "prompt": PROMPT}
    jobs = [
        ("decompose 2 layers", "decompose", {"layers": 2}, {"image": InputImage("image", image)}),
        ("decompose 4 layers", "decompose", {"layers": 4}, {"image": InputImage("image", image)}),
        ("decompose 2 layers @1024", "decompose", {"layers": 2, "resolution": 1024},
         {"image": InputImage("image", image)}),
        ("decompose auto + caption", "decompose", {"layers": "auto", "prompt": ""},
         {"image": InputImage("image", image)}),
        ("split 2 layers", "split", {"layers": 2}, {"layer": InputImage("layer", image)}),
        ("generate 2 layers", "generate", {"layers": 2, "width": size, "height": size}, {}),
        ("regenerate with document", "regenerate", {},
         {"layer": InputImage("layer", image[:64, :64]), "document": InputImage("doc", image)}),
    ]
    for label, op, params, inputs in jobs:
        request = JobRequest("bench", op, {**base, **params}, inputs)

        def job(request: JobRequest = request) -> float:
            started = time.perf_counter()
            list(engine.run(request, JobContext()))
            return time.perf_counter() - started

        print(f"  {label:<28} {in_worker_thread(job):6.2f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ops", action="store_true", help="also time every op directly")
    args = parser.parse_args()

    engine = DiffusionEngine.tiny(steps=args.steps)
    engine.warm_up()
    image = test_image(args.size)
    running = start_server(engine, ServerConfig())
    try:
        client = running.client("bench")
        direct_call(engine, image, args.layers, args.steps)  # warm both paths once
        served_call(client, image, args.layers, args.steps)
        direct, served = [], []
        for _ in range(args.repeat):
            direct.append(direct_call(engine, image, args.layers, args.steps))
            served.append(served_call(client, image, args.layers, args.steps))
        client.close()
    finally:
        stop_server(running)
    ratio = statistics.median(served) / statistics.median(direct)
    print(f"tiny decompose {args.size}x{args.size}, {args.layers} layers, {args.steps} steps, "
          f"640 bucket, {args.repeat} runs each")
    print(f"  pipeline alone  median {statistics.median(direct):6.2f} s  "
          f"(min {min(direct):.2f})")
    print(f"  through server  median {statistics.median(served):6.2f} s  "
          f"(min {min(served):.2f})")
    print(f"  overhead ratio  {ratio:.3f}  (min/min {min(served) / min(direct):.3f})")
    if args.ops:
        print("seconds per op, tiny engine called directly (worker thread):")
        time_ops(engine, args.size, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
