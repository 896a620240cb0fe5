"""The stock diffusers call against each acceleration and their combination, in one run.

On a GPU: the full-size Qwen-Image-Layered architecture (60-block ~20B transformer, the RGBA
VAE, a Qwen2.5-VL-7B-sized text encoder) in bf16, with random weights (no download; they run
as fast as trained ones) or the real weights with ``--model-dir``. The baseline is the stock
call (``QwenImageLayeredPipeline(...)(...)`` with the model card's settings, everything on the
GPU); each variant runs the same job through the engine. A 640 px, 4-layer, 50-step
decompose by default, after a 2-step warm-up per variant.

For each: seconds per job, speed-up against stock, peak GPU memory, transformer forwards
computed / skipped, and the agreement of its layers with the stock layers (mean soft IoU of
the layers' alpha; with random weights this only says the variant is not broken, with real
weights it is the quality cost).

    python benchmarks/bench_gpu.py [--variants stock,fbcache,dbcache,compile,fp8,all]
        [--steps 50] [--layers 4] [--resolution 640] [--model-dir DIR]
    python benchmarks/bench_gpu.py --dry-run     # tiny configs on CPU, the same table

Variants: fbcache, dbcache (cache-dit: First-Block-like F1B0 / F8B0 + TaylorSeer), compile
(``compile_repeated_blocks``), fp8 (torchao dynamic float8 of the transformer; Ada/Hopper),
all (dbcache + compile + fp8). A variant whose package or hardware is missing says so.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from layerbridge.engines.base import InputImage, JobContext, JobRequest  # noqa: E402
from layerbridge.engines.diffusion import DiffusionEngine, MemoryOptions  # noqa: E402
from layerbridge.engines.diffusion.acceleration import Acceleration  # noqa: E402
from layerbridge.engines.diffusion.planner import (  # noqa: E402
    LAYERED_TRANSFORMER_CONFIG,
    TEXT_CONFIG,
    VAE_CONFIG,
    VISION_CONFIG,
)

VARIANTS = ("stock", "fbcache", "dbcache", "compile", "fp8", "all")
PROMPT = "a red box on a grey poster"
#: What each variant turns on: (cache, compile, fp8).
SETTINGS = {"fbcache": ("fbcache", False, False), "dbcache": ("dbcache", False, False),
            "compile": ("none", True, False), "fp8": ("none", False, True),
            "all": ("dbcache", True, True)}


@dataclass
class Row:
    variant: str
    seconds: float | None = None
    peak_gib: float | None = None
    computed: int | None = None
    skipped: int | None = None
    agreement: float | None = None
    note: str = ""


# --- building pipelines ------------------------------------------------------------------


def full_components() -> dict[str, Any]:
    """The full-size architecture with random weights, on the current default device."""
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from layerbridge.engines.tiny import tiny_processor, tiny_scheduler, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token)
           for token in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=TEXT_CONFIG, vision_config=VISION_CONFIG,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"]))
    return {"transformer": QwenImageTransformer2DModel(**LAYERED_TRANSFORMER_CONFIG),
            "vae": AutoencoderKLQwenImage(**VAE_CONFIG, input_channels=4),
            "text_encoder": encoder, "tokenizer": tokenizer,
            "processor": tiny_processor(tokenizer), "scheduler": tiny_scheduler()}


def full_pipeline(model_dir: Path | None) -> Any:
    """The layered pipeline at full size in bf16 on the GPU: real weights from ``model_dir``
    when given, else random ones."""
    import torch
    from diffusers import QwenImageLayeredPipeline

    if model_dir is not None:
        from layerbridge.weights import LAYERED_MODEL, find_model

        folder = find_model(LAYERED_MODEL, model_dir)
        return QwenImageLayeredPipeline.from_pretrained(folder, dtype=torch.bfloat16).to("cuda")
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        try:
            return QwenImageLayeredPipeline(**full_components())
        finally:
            torch.set_default_dtype(torch.float32)


def tiny_pipeline() -> Any:
    from diffusers import QwenImageLayeredPipeline

    from layerbridge.engines.tiny import build_tiny_components

    return QwenImageLayeredPipeline(**build_tiny_components().layered)


# --- running -----------------------------------------------------------------------------


def test_image(size: int) -> np.ndarray:
    image = np.full((size * 3 // 4, size, 4), 200, np.uint8)
    image[size // 8:size // 2, size // 5:size * 2 // 3, :3] = (180, 40, 40)
    return image


def stock_call(pipe: Any, image: np.ndarray, args: argparse.Namespace,
               steps: int) -> tuple[list, dict]:
    """The plain diffusers call with the model card's settings: what a user would write
    (the forward counter's hooks only count)."""
    import torch

    from layerbridge.engines.diffusion import pil_to_rgba, to_rgba_pil
    from layerbridge.engines.diffusion.acceleration import counter_for

    counter = counter_for(pipe)
    before = counter.totals()
    with torch.inference_mode():
        output = pipe(image=to_rgba_pil(image), prompt=PROMPT, negative_prompt=" ",
                      true_cfg_scale=4.0, layers=args.layers, resolution=args.resolution,
                      num_inference_steps=steps,
                      generator=torch.Generator("cpu").manual_seed(0), cfg_normalize=True,
                      use_en_prompt=True, num_images_per_prompt=1, output_type="pil")
    size = (image.shape[1], image.shape[0])
    forwards, computed = (now - then for now, then in zip(counter.totals(), before,
                                                          strict=True))
    stats = {"forwards_computed": computed, "forwards_skipped": forwards - computed}
    return [pil_to_rgba(layer, size) for layer in output.images[0]], stats


def engine_call(engine: DiffusionEngine, image: np.ndarray, args: argparse.Namespace,
                steps: int) -> tuple[list, dict]:
    params = {"layers": args.layers, "steps": steps, "seed": 0, "prompt": PROMPT,
              "resolution": args.resolution, "negative_prompt": None, "guidance": None}
    ctx = JobContext()
    request = JobRequest("bench", "decompose", params, {"image": InputImage("image", image)})
    return [layer.pixels for layer in engine.run(request, ctx)], ctx.stats


def alpha_agreement(layers: list, reference: list) -> float:
    """Mean soft IoU of the layers' alpha against the reference's, layer by layer."""
    scores = []
    for ours, theirs in zip(layers, reference, strict=True):
        a = ours[..., 3].astype(np.float64) / 255
        b = theirs[..., 3].astype(np.float64) / 255
        union = np.maximum(a, b).sum()
        scores.append(1.0 if union == 0 else float(np.minimum(a, b).sum() / union))
    return float(np.mean(scores))


def why_not(variant: str, args: argparse.Namespace) -> str:
    """Why ``variant`` cannot run here, or '' when it can."""
    import torch

    cache, compile_, fp8 = SETTINGS.get(variant, ("none", False, False))
    if cache != "none" and importlib.util.find_spec("cache_dit") is None:
        return "skipped: pip install cache-dit"
    if fp8 and importlib.util.find_spec("torchao") is None:
        return "skipped: pip install torchao"
    if fp8 and (args.dry_run or torch.cuda.get_device_capability() < (8, 9)):
        return "skipped: fp8 needs an Ada or Hopper GPU"
    if compile_ and args.dry_run and not args.compile_on_cpu:
        return "skipped in --dry-run (minutes of inductor on CPU; --compile-on-cpu runs it)"
    return ""


def measure(variant: str, build: Callable[[], Any], image: np.ndarray, reference: list | None,
            args: argparse.Namespace) -> tuple[Row, list | None]:
    """Warm up with 2 steps, then time one job of ``args.steps`` steps."""
    import torch

    reason = why_not(variant, args)
    if reason:
        return Row(variant, note=reason), None
    cuda = torch.cuda.is_available() and not args.dry_run
    gc.collect()  # the previous variant's pipeline goes before this one is built
    if cuda:
        torch.cuda.empty_cache()
    pipe = build()
    pipe.set_progress_bar_config(disable=True)
    if variant == "stock":
        run = lambda steps: stock_call(pipe, image, args, steps)  # noqa: E731
    else:
        cache, compile_, fp8 = SETTINGS[variant]
        if fp8:
            from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

            quantize_(pipe.transformer, Float8DynamicActivationFloat8WeightConfig())
        knobs = {"threshold": 10.0, "warmup_steps": 1} if args.dry_run else {}
        memory = MemoryOptions(device="cuda" if cuda else "cpu",
                               dtype="bfloat16" if cuda else "float32")
        engine = DiffusionEngine("bench", layered=lambda: pipe, text_to_image=_absent,
                                 edit=_absent, memory=memory,
                                 acceleration=Acceleration(cache=cache, compile=compile_,
                                                           **knobs))
        run = lambda steps: engine_call(engine, image, args, steps)  # noqa: E731
    try:
        run(2)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        layers, stats = run(args.steps)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    except torch.OutOfMemoryError:
        return Row(variant, note="out of GPU memory"), None
    row = Row(variant, seconds=seconds,
              peak_gib=torch.cuda.max_memory_allocated() / 1024**3 if cuda else None,
              computed=stats.get("forwards_computed"), skipped=stats.get("forwards_skipped"),
              agreement=None if reference is None else alpha_agreement(layers, reference))
    return row, layers


def _absent() -> Any:
    raise RuntimeError("only decompose is measured")


def table(rows: list[Row]) -> str:
    stock = next((row.seconds for row in rows if row.variant == "stock" and row.seconds), None)
    lines = [f"{'variant':<9} {'s/job':>8} {'speed-up':>8} {'peak GiB':>8} "
             f"{'computed':>8} {'skipped':>7} {'alpha IoU':>9}  note"]
    for row in rows:
        if row.seconds is None:
            lines.append(f"{row.variant:<9} {'-':>8} {'-':>8} {'-':>8} {'-':>8} {'-':>7} "
                         f"{'-':>9}  {row.note}")
            continue
        speed = f"{stock / row.seconds:.2f}x" if stock else "-"
        lines.append(
            f"{row.variant:<9} {row.seconds:8.2f} {speed:>8} "
            f"{_fmt(row.peak_gib, '.1f'):>8} {_fmt(row.computed, 'd'):>8} "
            f"{_fmt(row.skipped, 'd'):>7} {_fmt(row.agreement, '.3f'):>9}  {row.note}")
    return "\n".join(lines)


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="50 (8 with --dry-run)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=640, choices=(640, 1024))
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny configs on CPU: checks the benchmark itself, not speed")
    parser.add_argument("--compile-on-cpu", action="store_true")
    args = parser.parse_args(argv)
    args.steps = args.steps or (8 if args.dry_run else 50)
    import torch

    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if "stock" not in variants:
        variants.insert(0, "stock")
    if args.dry_run:
        build: Callable[[], Any] = tiny_pipeline
        image = test_image(64)
        print(f"dry run on CPU: tiny random-weight pipeline, {args.layers} layers, "
              f"{args.steps} steps, {args.resolution} bucket (checks the benchmark, not speed)")
    elif not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; run with --dry-run to check the benchmark on CPU. "
              "Nothing was measured.", file=sys.stderr)
        return 2
    else:
        def build() -> Any:
            return full_pipeline(args.model_dir)
        image = test_image(1024)
        weights = "real weights" if args.model_dir else "random weights"
        print(f"{torch.cuda.get_device_name(0)}: decompose {args.resolution} bucket, "
              f"{args.layers} layers, {args.steps} steps, true CFG, bf16, {weights}")
    rows: list[Row] = []
    reference: list | None = None
    for variant in variants:
        row, layers = measure(variant, build, image, reference, args)
        if variant == "stock":
            reference = layers
        rows.append(row)
        print(f"  {variant}: done", file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
