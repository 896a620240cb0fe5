"""Every component of the qwen engine's pipelines, with tiny random weights, built in-process.

The tiny engine exists so that CI runs the *real* diffusers code path (the same pipeline
classes, schedulers, tokenizer, processor, VAE and transformer classes as ``--engine qwen``)
with no download and no GPU. Only the configs are shrunk; the pixels are noise, the plumbing
is real. Weights come from a fixed torch seed, so two builds give identical models and jobs
with the same seed give the same bytes.

The sizes follow the constraints of the pipelines (see ``docs/gpu-engine.md``):
``attention_head_dim == sum(axes_dims_rope)``, ``in_channels == 4 * z_dim`` and ``z_dim != 4``
(the layered pipeline would take a 4-channel RGBA image for ready-made latents).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

#: The seed every tiny build starts from: same seed, same weights, same output bytes.
TINY_WEIGHT_SEED = 0
#: Special tokens the Qwen pipelines' prompt templates use, in the order Qwen2.5-VL numbers them.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
LATENT_CHANNELS = 16
TEXT_HIDDEN = 16


@dataclass
class TinyComponents:
    """What :class:`~layerbridge.engines.diffusion.DiffusionEngine` needs, shared where the
    real models share: one text encoder, tokenizer and processor for all three pipelines, one
    RGB VAE for text-to-image and edit, the RGBA VAE and layered transformer for decompose."""

    layered: dict[str, Any]
    text_to_image: dict[str, Any]
    edit: dict[str, Any]


def byte_level_vocab() -> dict[str, int]:
    """The GPT-2 byte-to-unicode symbols as ids 0..255, then the special tokens.

    With no merges every byte is one token, so any prompt (any language) tokenizes.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    symbols = {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}
    vocab = {symbols[byte]: byte for byte in range(256)}
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = 256 + offset
    return vocab


def tiny_tokenizer() -> Any:
    """A Qwen2Tokenizer over :func:`byte_level_vocab`, built in memory (no files)."""
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer(vocab=byte_level_vocab(), merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def tiny_processor(tokenizer: Any) -> Any:
    """The Qwen2-VL processor the layered pipeline uses to caption and the edit pipeline to
    see its images; small ``max_pixels`` keeps the vision tower's sequence short."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from layerbridge.weights import qwen_vl_processor

    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56)
    return qwen_vl_processor(image_processor, tokenizer)


def tiny_text_encoder(tokenizer: Any) -> Any:
    """A two-layer Qwen2.5-VL (text and vision towers) whose hidden size is the transformers'
    ``joint_attention_dim``."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "mrope_section": [1, 1, 2]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "out_hidden_size": TEXT_HIDDEN,
        "fullatt_block_indexes": [1],
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    # Random weights never choose to stop, and the layered pipeline captions with
    # max_new_tokens=512: make every token an end token so a caption is one token (fast and
    # deterministic), through the same generate() call the real model uses.
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = list(range(len(tokenizer)))
    return model


def tiny_vae(input_channels: int) -> Any:
    """AutoencoderKLQwenImage: 4 input channels for the layered model (RGBA), 3 for the others."""
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        input_channels=input_channels,
        latents_mean=[0.0] * LATENT_CHANNELS,
        latents_std=[1.0] * LATENT_CHANNELS,
    ).eval()


def tiny_transformer(layered: bool) -> Any:
    """QwenImageTransformer2DModel: the layered variant adds 3-D (layer) RoPE and the RGB/RGBA
    timestep condition, exactly as the real Qwen-Image-Layered config does."""
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=TEXT_HIDDEN,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
        use_layer3d_rope=layered,
        use_additional_t_cond=layered,
    ).eval()


def tiny_scheduler() -> Any:
    """The scheduler config Qwen-Image ships (dynamic exponential shift)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        num_train_timesteps=1000,
        shift=1.0,
        shift_terminal=0.02,
        time_shift_type="exponential",
        use_dynamic_shifting=True,
    )


def build_tiny_components(seed: int = TINY_WEIGHT_SEED) -> TinyComponents:
    """Build all three pipelines' components from ``seed``; seconds on a CPU, no files."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        processor = tiny_processor(tokenizer)
        text_encoder = tiny_text_encoder(tokenizer)
        rgba_vae = tiny_vae(input_channels=4)
        rgb_vae = tiny_vae(input_channels=3)
        layered_transformer = tiny_transformer(layered=True)
        image_transformer = tiny_transformer(layered=False)
        edit_transformer = tiny_transformer(layered=False)
    text = {"text_encoder": text_encoder, "tokenizer": tokenizer}
    return TinyComponents(
        layered={**text, "processor": processor, "vae": rgba_vae,
                 "transformer": layered_transformer, "scheduler": tiny_scheduler()},
        text_to_image={**text, "vae": rgb_vae, "transformer": image_transformer,
                       "scheduler": tiny_scheduler()},
        edit={**text, "processor": processor, "vae": rgb_vae,
              "transformer": edit_transformer, "scheduler": tiny_scheduler()},
    )


def save_pipeline(pipe: Any, folder: Any) -> None:
    """``pipe.save_pretrained(folder)`` in the published models' layout.

    On hosts without torchvision the processor is an image-only subclass of Qwen2VLProcessor
    (see :func:`layerbridge.weights.qwen_vl_processor`); its files are a Qwen2VLProcessor's,
    so model_index.json names that class, as the published Qwen-Image models do, and the
    saved folder loads through the same code as a downloaded one.
    """
    import json
    from pathlib import Path

    pipe.save_pretrained(folder)
    index_file = Path(folder) / "model_index.json"
    index = json.loads(index_file.read_text())
    if "processor" in index:
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


#: The step cache's knobs for the tiny engine: its random weights change a lot from step to
#: step, so the published threshold (0.08) would never reuse a step; this one does after one
#: computed step, which is what lets a CPU test see forwards skipped.
TINY_CACHE_KNOBS = {"threshold": 10.0, "warmup_steps": 1}
