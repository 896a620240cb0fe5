"""The memory planner: where each component lives and at what precision, for a GPU and a host.

Sizes are not typed in: each component's parameters are counted on the real architecture,
built from its published config on the meta device (no weights, no memory, about a second).
A plan is the fastest placement that fits, tried in this order (fastest first, lossless first):

1. ``resident``: the active pipeline's components all on the GPU, in bf16;
2. ``model``: model offload, one component on the GPU at a time (diffusers'
   ``enable_model_cpu_offload``: seconds per job spent moving weights);
3. ``resident``, then ``model``, with the transformer in int8 (or fp8 when asked): half
   its memory, at a small quality cost;
4. ``model`` with transformer and text encoder in 4-bit (nf4, bitsandbytes);
5. ``group``: block-level group offload with CUDA streams (diffusers'
   ``enable_group_offload``): a few GB of GPU, weights streamed from pinned RAM, slowest.

Host RAM must hold every enabled pipeline's weights (idle pipelines wait there; offload
modes keep all weights there), plus the process itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

GIB = 1024**3
#: Where the configs below come from (read through the model cards and config.json files).
CONFIG_SOURCES = {
    "transformer": "Qwen/Qwen-Image-Layered transformer/config.json (Qwen-Image and "
                   "Qwen-Image-Edit-2509 ship the same sizes without the layer RoPE and "
                   "RGBA timestep condition)",
    "text_encoder": "Qwen/Qwen2.5-VL-7B-Instruct config.json (the text_encoder of the Qwen "
                    "pipelines)",
    "vae": "Qwen/Qwen-Image vae/config.json (Qwen-Image-Layered: input_channels 4)",
}
TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 60,
    "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 3584,
    "guidance_embeds": False, "axes_dims_rope": (16, 56, 56),
}
LAYERED_TRANSFORMER_CONFIG = {**TRANSFORMER_CONFIG, "use_layer3d_rope": True,
                              "use_additional_t_cond": True}
TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}
VISION_CONFIG: dict[str, Any] = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
    "out_hidden_size": 3584,
}
VAE_CONFIG: dict[str, Any] = {
    "base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
    "temperal_downsample": [False, True, True],
}
#: Bytes per parameter of a quantised linear weight (scales included: torchao per-channel
#: int8/fp8 adds a scale per row; bitsandbytes nf4 with double quantisation about 1/64 byte).
BYTES_PER_PARAM = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "nf4": 0.52}
#: GPU memory for activations, the CUDA context and the allocator's slack, per resolution
#: bucket, on top of the weights: estimates (about 10k tokens per forward at 640, 25k at
#: 1024, the VAE decoding layers+1 frames), not measured on a GPU.
ACTIVATION_GIB = {640: 4.0, 1024: 7.0}
#: Host memory of the process itself (Python, torch, CUDA libraries), besides the weights.
PROCESS_RAM_GIB = 4.0
#: The pipelines behind each op; split and decompose share the layered one.
OP_PIPELINES = {"decompose": "layered", "split": "layered", "generate": "text_to_image",
                "regenerate": "edit"}
PLACEMENTS = ("resident", "model", "group")


@dataclass(frozen=True)
class ComponentSize:
    """A component's parameters: in linear layers (what quantisation shrinks) and the rest
    (embeddings, norms, convolutions, the output head, kept in bf16); ``largest_block`` is
    the biggest repeated block, what group offload holds on the GPU at a time."""

    linear: int
    other: int
    largest_block: int

    @property
    def total(self) -> int:
        return self.linear + self.other

    def gib(self, precision: str) -> float:
        return (self.linear * BYTES_PER_PARAM[precision] + self.other * 2.0) / GIB


def _count(model: Any, blocks: Iterable[Any]) -> ComponentSize:
    import torch

    linear = sum(module.weight.numel() for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"))
    total = sum(parameter.numel() for parameter in model.parameters())
    largest = max((sum(p.numel() for p in block.parameters()) for block in blocks), default=0)
    return ComponentSize(linear=linear, other=total - linear, largest_block=largest)


@cache
def component_size(name: str) -> ComponentSize:
    """Parameter counts of ``name`` (layered_transformer, transformer, text_encoder,
    vae_rgba, vae_rgb), from its real config built on the meta device."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        if name in ("layered_transformer", "transformer"):
            from diffusers import QwenImageTransformer2DModel

            config = LAYERED_TRANSFORMER_CONFIG if name == "layered_transformer" else \
                TRANSFORMER_CONFIG
            model = QwenImageTransformer2DModel(**config)
            return _count(model, model.transformer_blocks)
        if name == "text_encoder":
            from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

            config = Qwen2_5_VLConfig(text_config=TEXT_CONFIG, vision_config=VISION_CONFIG,
                                      tie_word_embeddings=False)
            model = Qwen2_5_VLForConditionalGeneration(config)
            return _count(model, model.model.language_model.layers)
        if name in ("vae_rgba", "vae_rgb"):
            from diffusers import AutoencoderKLQwenImage

            channels = 4 if name == "vae_rgba" else 3
            model = AutoencoderKLQwenImage(**VAE_CONFIG, input_channels=channels)
            return _count(model, [])
    raise ValueError(f"unknown component {name!r}")


def pipeline_components(pipeline: str) -> dict[str, str]:
    """Role -> architecture of one pipeline's weighty components."""
    transformer = "layered_transformer" if pipeline == "layered" else "transformer"
    vae = "vae_rgba" if pipeline == "layered" else "vae_rgb"
    return {"transformer": transformer, "text_encoder": "text_encoder", "vae": vae}


Sizes = dict[str, ComponentSize]


def published_sizes(pipeline: str) -> Sizes:
    """Role -> size of the published model behind ``pipeline`` (layered, text_to_image, edit)."""
    return {role: component_size(arch) for role, arch in pipeline_components(pipeline).items()}


def folder_sizes(folder: Any) -> Sizes:
    """Role -> size of the pipeline saved in ``folder``, each component built on the meta
    device from its own config.json (what will load, whatever model it is)."""
    import json

    from accelerate import init_empty_weights

    sizes = {}
    for role in ("transformer", "text_encoder", "vae"):
        part = folder / role
        if not (part / "config.json").is_file():
            continue
        config = json.loads((part / "config.json").read_text())
        with init_empty_weights():
            if "_class_name" in config:  # a diffusers model
                import diffusers

                model = getattr(diffusers, config["_class_name"]).from_config(config)
            else:
                import transformers

                model_config = transformers.AutoConfig.from_pretrained(part)
                model_class = getattr(transformers, model_config.architectures[0])
                model = model_class._from_config(model_config)
        blocks = getattr(model, "transformer_blocks", None)
        if blocks is None and role == "text_encoder":
            blocks = model.model.language_model.layers
        sizes[role] = _count(model, blocks if blocks is not None else [])
    return sizes


@dataclass(frozen=True)
class Plan:
    """Where weights live and at what precision; what that needs; whether it fits."""

    placement: str  # resident | model | group
    transformer: str  # bf16 | fp8 | int8 | nf4
    text_encoder: str  # bf16 | nf4 (nf4 comes with an nf4 transformer)
    vram_gib: float
    ram_gib: float
    vram_available: float
    ram_available: float
    pipelines: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return self.vram_gib <= self.vram_available and self.ram_gib <= self.ram_available

    @property
    def offload(self) -> str:
        return {"resident": "none", "model": "model", "group": "group"}[self.placement]

    @property
    def quantize(self) -> str | None:
        return None if self.transformer == "bf16" else self.transformer

    @property
    def flags(self) -> str:
        return f"--offload {self.offload}" + (f" --quantize {self.quantize}"
                                              if self.quantize else "")

    def describe(self) -> str:
        where = {"resident": "all on the GPU",
                 "model": "model offload (one component on the GPU at a time)",
                 "group": "group offload (blocks streamed from RAM; slowest)"}
        return (f"{where[self.placement]}; transformer {self.transformer}, text encoder "
                f"{self.text_encoder}; needs GPU {self.vram_gib:.1f} of "
                f"{self.vram_available:.1f} GiB, RAM {self.ram_gib:.1f} of "
                f"{self.ram_available:.1f} GiB ({self.flags})")


def needed_vram_gib(placement: str, transformer: str, text_encoder: str, sizes: Sizes,
                    resolution: int = 640) -> float:
    """GPU memory one pipeline (``sizes``: role -> size) needs while it runs."""
    weights = {"transformer": sizes["transformer"].gib(transformer),
               "text_encoder": sizes["text_encoder"].gib(text_encoder),
               "vae": sizes["vae"].gib("bf16")}
    activations = ACTIVATION_GIB.get(resolution, ACTIVATION_GIB[1024])
    if placement == "resident":
        return sum(weights.values()) + activations
    if placement == "model":
        return max(weights.values()) + activations
    # group: two blocks in flight (one computing, one arriving on the stream)
    block = max(sizes[role].largest_block for role in ("transformer", "text_encoder"))
    return 2 * block * 2.0 / GIB + weights["vae"] + activations


def needed_ram_gib(transformer: str, text_encoder: str, sizes: dict[str, Sizes],
                   shared_text_encoder: bool = False) -> float:
    """Host memory for every enabled pipeline's weights (``sizes``: pipeline -> role -> size;
    idle or offloaded, they wait in RAM) and the process. Without ``shared_text_encoder`` each
    pipeline brings its own encoder: pipelines share one only when its files are the same."""
    total = 0.0
    for index, pipeline in enumerate(sorted(sizes)):
        parts = sizes[pipeline]
        total += parts["transformer"].gib(transformer) + parts["vae"].gib("bf16")
        if index == 0 or not shared_text_encoder:
            total += parts["text_encoder"].gib(text_encoder)
    return total + PROCESS_RAM_GIB


def candidates(quantize: str | None) -> list[tuple[str, str, str]]:
    """(placement, transformer, text encoder) in the order tried: fastest and lossless first.
    ``quantize`` pins the transformer's precision where the user chose one."""
    if quantize:
        text = "nf4" if quantize == "nf4" else "bf16"
        return [("resident", quantize, text), ("model", quantize, text),
                ("group", quantize, text)]
    return [("resident", "bf16", "bf16"), ("model", "bf16", "bf16"),
            ("resident", "int8", "bf16"), ("model", "int8", "bf16"), ("model", "nf4", "nf4"),
            ("group", "bf16", "bf16")]


def plan_for(vram_gib: float, ram_gib: float, ops: Iterable[str] = ("decompose",),
             resolution: int = 640, quantize: str | None = None, offload: str = "auto",
             shared_text_encoder: bool = False,
             sizes: dict[str, Sizes] | None = None) -> Plan:
    """The fastest plan that fits ``vram_gib`` of free GPU memory and ``ram_gib`` of host
    memory with the pipelines of ``ops`` (``sizes``: pipeline -> role -> size; default the
    published models); if none fits, the one that needs the least, with ``fits`` False.
    ``offload`` other than auto pins the placement, ``quantize`` the transformer's precision."""
    pipelines = sorted({OP_PIPELINES[op] for op in ops})
    sizes = {pipeline: (sizes or {}).get(pipeline) or published_sizes(pipeline)
             for pipeline in pipelines}
    placement = {"none": "resident", "sequential": "group"}.get(offload, offload)
    # a placement the user pinned keeps the precision they chose (bf16 unless --quantize)
    tried = [option for option in candidates(quantize)
             if offload == "auto" or (option[0] == placement and (quantize or option[1] == "bf16"))]
    plans = []
    for option in tried:
        place, transformer, text = option
        need = max(needed_vram_gib(place, transformer, text, parts, resolution)
                   for parts in sizes.values())
        host = needed_ram_gib(transformer, text, sizes, shared_text_encoder)
        plan = Plan(place, transformer, text, round(need, 1), round(host, 1), vram_gib,
                    ram_gib, tuple(pipelines))
        if plan.fits:
            return plan
        plans.append(plan)
    return min(plans, key=lambda plan: (plan.ram_gib > ram_gib, plan.vram_gib))


def host_ram_gib() -> float:
    """Memory the host can give now (MemAvailable), in GiB; 0 where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return 0.0


def gpu_free_gib(device: str) -> float | None:
    """Free memory of the CUDA ``device`` in GiB; None where there is no CUDA GPU."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return free / GIB
