"""Full-size Qwen-Image-Layered speed and GPU memory per memory option, with random weights.

No download is needed: the real architecture (60-block, ~20B-parameter transformer, the RGBA
VAE, a Qwen2.5-VL-7B-sized text encoder) is built with random weights, which run exactly as
fast as trained ones. Each option runs one decompose job through the engine (640 bucket,
4 layers, 50 steps, true CFG, a given prompt so no captioning) after a 2-step warm-up, and
reports seconds per job, seconds per step and peak GPU memory (torch's allocator peak).

    python benchmarks/bench_gpu.py [--options none,model,int8] [--steps 50] [--layers 4]
        [--resolution 640] [--scratch /tmp/lb-bench]

Options: none (all on the GPU, ~60 GB), model (model CPU offload), sequential (layer-by-layer
offload; very slow, try --steps 2 and scale), vae_tiling, int8 (torchao weight-only int8,
applied in memory), nf4 (bitsandbytes 4-bit: the random transformer is saved to --scratch,
~41 GB of disk, and reloaded through diffusers' quantization config, as real weights load).
The tokenizer is the tiny byte-level one, so prompts tokenize longer than with Qwen's BPE;
the text encoder's share of the time is small either way.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerbridge.engines.base import InputImage, JobContext, JobRequest  # noqa: E402
from layerbridge.engines.diffusion import DiffusionEngine, MemoryOptions  # noqa: E402

OPTIONS = ("none", "model", "sequential", "vae_tiling", "int8", "nf4")


def full_transformer() -> Any:
    """Qwen-Image-Layered's transformer config (the published transformer/config.json)."""
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=3584, guidance_embeds=False,
        axes_dims_rope=(16, 56, 56), use_layer3d_rope=True, use_additional_t_cond=True,
    )


def full_vae() -> Any:
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(
        base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
        temperal_downsample=[False, True, True], input_channels=4,
        latents_mean=[0.0] * 16, latents_std=[1.0] * 16,
    )


def full_text_encoder(tokenizer: Any) -> Any:
    """Qwen2.5-VL-7B-Instruct's sizes, with the tiny tokenizer's special-token ids."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token)
           for token in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                     "num_hidden_layers": 28, "num_attention_heads": 28,
                     "num_key_value_heads": 4, "max_position_embeddings": 128000,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": [16, 24, 24]}},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420,
                       "num_heads": 16, "out_hidden_size": 3584},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def build_pipeline(option: str, scratch: Path) -> Any:
    """The layered pipeline at full size in bf16: on the GPU for ``none``/``vae_tiling``/
    ``int8``, on the CPU where an offload mode will move parts in and out."""
    import torch
    from diffusers import QwenImageLayeredPipeline

    from layerbridge.engines.tiny import tiny_processor, tiny_scheduler, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    home = "cpu" if option in ("model", "sequential", "nf4") else "cuda"
    with torch.device(home):
        torch.set_default_dtype(torch.bfloat16)
        try:
            parts = {"transformer": full_transformer(), "vae": full_vae(),
                     "text_encoder": full_text_encoder(tokenizer)}
        finally:
            torch.set_default_dtype(torch.float32)
    if option == "int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(parts["transformer"], Int8WeightOnlyConfig())
    if option == "nf4":
        parts["transformer"] = reload_nf4(parts["transformer"], scratch)
    return QwenImageLayeredPipeline(scheduler=tiny_scheduler(), tokenizer=tokenizer,
                                    processor=tiny_processor(tokenizer), **parts)


def reload_nf4(transformer: Any, scratch: Path) -> Any:
    """Save the random transformer and load it 4-bit, the way --quantize nf4 loads weights."""
    import torch
    from diffusers import BitsAndBytesConfig, QwenImageTransformer2DModel

    folder = scratch / "transformer"
    transformer.save_pretrained(folder)
    del transformer
    gc.collect()
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                bnb_4bit_compute_dtype=torch.bfloat16)
    return QwenImageTransformer2DModel.from_pretrained(folder, quantization_config=config,
                                                       dtype=torch.bfloat16)


def engine_for(option: str, scratch: Path) -> DiffusionEngine:
    pipe = build_pipeline(option, scratch)
    offload = option if option in ("model", "sequential") else "none"
    memory = MemoryOptions(device="cuda", dtype="bfloat16", offload=offload,
                           vae_tiling=option == "vae_tiling")
    # nf4 and int8 weights must not be moved or cast again by a plain .to("cuda").
    return DiffusionEngine("qwen-random", layered=lambda: pipe, text_to_image=_absent,
                           edit=_absent, memory=memory)


def _absent() -> Any:
    raise RuntimeError("only decompose is measured")


def time_job(engine: DiffusionEngine, steps: int, layers: int, resolution: int) -> float:
    image = np.full((768, 1024, 4), 200, np.uint8)
    image[100:400, 200:700, :3] = (180, 40, 40)
    params = {"layers": layers, "steps": steps, "seed": 0, "prompt": "a red box on grey",
              "resolution": resolution, "negative_prompt": None, "guidance": None}
    request = JobRequest("bench", "decompose", params, {"image": InputImage("image", image)})
    started = time.perf_counter()
    layers_out = list(engine.run(request, JobContext()))
    elapsed = time.perf_counter() - started
    assert len(layers_out) == layers
    return elapsed


def measure(option: str, args: argparse.Namespace) -> str:
    import torch

    needs = {"int8": "torchao", "nf4": "bitsandbytes"}.get(option)
    if needs and importlib.util.find_spec(needs) is None:
        return f"{option:<11} skipped: pip install {needs}"
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        engine = engine_for(option, Path(args.scratch))
        engine.warm_up()
        time_job(engine, 2, args.layers, args.resolution)  # warm-up: kernels, allocator
        torch.cuda.reset_peak_memory_stats()
        seconds = time_job(engine, args.steps, args.layers, args.resolution)
    except torch.OutOfMemoryError:
        return f"{option:<11} out of GPU memory"
    finally:
        engine = None
        gc.collect()
        torch.cuda.empty_cache()
    peak = torch.cuda.max_memory_allocated() / 1024**3
    return (f"{option:<11} {seconds:8.1f} s/job  {seconds / args.steps:6.2f} s/step  "
            f"peak {peak:5.1f} GB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", default="none,model,int8",
                        help=f"comma-separated, from {', '.join(OPTIONS)}")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=640, choices=(640, 1024))
    parser.add_argument("--scratch", default="/tmp/layerbridge-bench")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here (torch.cuda.is_available() is False); this "
              "benchmark needs an NVIDIA GPU with about 80 GB for --options none, or 24 GB "
              "with --options model. Nothing was measured.", file=sys.stderr)
        return 2
    options = [name.strip() for name in args.options.split(",") if name.strip()]
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        parser.error(f"unknown options {unknown}; choose from {OPTIONS}")
    device = torch.cuda.get_device_name(0)
    total = torch.cuda.get_device_properties(0).total_memory / 1024**3
    print(f"{device}, {total:.0f} GB; decompose {args.resolution} bucket, {args.layers} layers, "
          f"{args.steps} steps, true CFG, bf16, random weights")
    for option in options:
        print(measure(option, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
