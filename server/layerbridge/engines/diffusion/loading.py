"""Loading the real pipelines from the folders :mod:`layerbridge.weights` finds, sharing
identical components, quantising where asked, refusing what cannot fit."""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerbridge.engines.base import (
    BAD_PARAMS,
    ENGINE_FAILED,
    MODEL_MISSING,
    OUT_OF_MEMORY,
    EngineError,
)
from layerbridge.engines.diffusion.acceleration import acceleration_options
from layerbridge.engines.diffusion.memory import OOM_ADVICE, memory_options, torch_dtype
from layerbridge.engines.diffusion.planner import (
    PROCESS_RAM_GIB,
    Plan,
    folder_sizes,
    gpu_free_gib,
    host_ram_gib,
    needed_ram_gib,
    plan_for,
)
from layerbridge.weights import (
    EDIT_MODEL,
    GENERATE_MODEL,
    LAYERED_MODEL,
    diffusers_version_problem,
    find_model,
    folder_fingerprint,
    has_torchvision,
    pick_device,
    qwen_vl_processor,
)

log = logging.getLogger("layerbridge.diffusion")

#: Published pipeline classes: the edit model must take two pictures (the layer and the
#: document), which only the "Plus" pipeline of Edit-2509 and Edit-2511 does.
EDIT_PIPELINE = "QwenImageEditPlusPipeline"
QUANTIZE = ("fp8", "int8", "nf4")


def check_memory_plan(plan: Plan, device: str) -> None:
    """Refuse to load what cannot fit, before minutes of loading end in a crash; the message
    names what the options need, what the machine has, and a plan that fits if any does."""
    if plan.fits:
        return
    best = plan_for(plan.vram_available, plan.ram_available, ops=OPS_OF[plan.pipelines])
    advice = (f"a plan that fits this machine: {best.flags}" if best.fits else
              "no plan fits this machine's memory: free the GPU (nvidia-smi), close other "
              "programs, or use --engine classic")
    raise EngineError(
        OUT_OF_MEMORY,
        f"{device} has {plan.vram_available:.1f} GiB of GPU memory and {plan.ram_available:.1f}"
        f" GiB of RAM free; {plan.flags} needs about {plan.vram_gib:.1f} GiB of GPU memory and "
        f"{plan.ram_gib:.1f} GiB of RAM; {advice} (`layerbridge doctor` prints the plans)",
    )


#: The ops whose pipelines a plan covers, by the pipelines it lists.
OPS_OF = {("layered",): ("decompose",), ("text_to_image",): ("generate",),
          ("edit",): ("regenerate",)}


def quantization_config(quantize: str, dtype: Any) -> Any:
    """diffusers' pipeline quantisation for ``quantize``, as a ``quant_mapping`` (the
    ``quant_backend="torchao"`` form raises in diffusers 0.42.1): fp8 (dynamic float8, Ada or
    Hopper GPUs) and int8 (weight-only) of the transformer through torchao (int8 falls back to
    bitsandbytes); nf4 of the transformer and the text encoder through bitsandbytes, what lets
    16 GB cards fit. A clear error names the package when it is missing."""
    import diffusers

    if quantize not in QUANTIZE:
        raise EngineError(BAD_PARAMS, f"quantize must be fp8, int8 or nf4, not {quantize!r}")
    has_torchao = importlib.util.find_spec("torchao") is not None
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    mapping: dict[str, Any] = {}
    if quantize in ("fp8", "int8") and has_torchao:
        from torchao import quantization

        config = (quantization.Float8DynamicActivationFloat8WeightConfig() if quantize == "fp8"
                  else quantization.Int8WeightOnlyConfig())
        mapping["transformer"] = diffusers.TorchAoConfig(config)
    elif quantize == "int8" and has_bnb:
        mapping["transformer"] = diffusers.BitsAndBytesConfig(load_in_8bit=True)
    elif quantize == "nf4" and has_bnb:
        import transformers

        four_bit = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                    "bnb_4bit_compute_dtype": dtype}
        mapping["transformer"] = diffusers.BitsAndBytesConfig(**four_bit)
        mapping["text_encoder"] = transformers.BitsAndBytesConfig(**four_bit)
    else:
        package = {"fp8": "torchao", "int8": "torchao or bitsandbytes",
                   "nf4": "bitsandbytes"}[quantize]
        raise EngineError(BAD_PARAMS, f"--quantize {quantize} needs {package}: pip install "
                          f"{package.split()[0]}")
    return diffusers.PipelineQuantizationConfig(quant_mapping=mapping)


def check_edit_pipeline(folder: Path, model_id: str) -> None:
    """Refuse an edit model whose pipeline cannot take the layer and the document together
    (the first Qwen-Image-Edit is QwenImageEditPipeline: one picture)."""
    found = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    if found != EDIT_PIPELINE:
        raise EngineError(
            MODEL_MISSING,
            f"the edit model {model_id} is a {found}; regenerate needs a {EDIT_PIPELINE} "
            "(two pictures: the layer and the document), as Qwen/Qwen-Image-Edit-2509 and "
            "Qwen/Qwen-Image-Edit-2511 are: `hf download Qwen/Qwen-Image-Edit-2509`, then "
            "--edit-model Qwen/Qwen-Image-Edit-2509",
        )


# --- loading ----------------------------------------------------------------------------------


def load_processor(folder: Path) -> Any:
    """The Qwen2-VL processor saved in ``folder``, image and text parts only when torchvision
    (which transformers' video processor needs) is absent."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    if has_torchvision():
        from transformers import Qwen2VLProcessor

        return Qwen2VLProcessor.from_pretrained(folder)
    return qwen_vl_processor(Qwen2VLImageProcessorPil.from_pretrained(folder),
                             AutoTokenizer.from_pretrained(folder))


@dataclass
class PipelineLoader:
    """Loads the pipelines of one engine from folders, sharing identical components."""

    dtype: str
    quantize: str | None
    loaded: dict[str, tuple[Path, Any]]

    def load(self, role: str, folder: Path, pipeline_class: Any = None) -> Any:
        """Load the pipeline in ``folder`` (its model_index.json class unless given), passing
        in every component an already loaded pipeline has with the same files."""
        import torch
        from diffusers import DiffusionPipeline

        dtype = torch_dtype(self.dtype)
        kwargs: dict[str, Any] = {"dtype": dtype, **self._shared(folder)}
        if self.quantize:
            config = quantization_config(self.quantize, dtype)
            config.quant_mapping = {name: value for name, value in config.quant_mapping.items()
                                    if name not in kwargs}
            if config.quant_mapping:
                kwargs["quantization_config"] = config
        if (folder / "processor").is_dir() and "processor" not in kwargs:
            kwargs["processor"] = load_processor(folder / "processor")
        pipeline_class = pipeline_class or DiffusionPipeline
        try:
            pipe = pipeline_class.from_pretrained(folder, **kwargs)
        except torch.OutOfMemoryError as exc:
            raise EngineError(OUT_OF_MEMORY, OOM_ADVICE) from exc
        self.loaded[role] = (folder, pipe)
        return pipe

    def _shared(self, folder: Path) -> dict[str, Any]:
        shared: dict[str, Any] = {}
        index = json.loads((folder / "model_index.json").read_text())
        for other_folder, pipe in self.loaded.values():
            for name, component in pipe.components.items():
                if name in shared or name not in index or component is None:
                    continue
                if folder_fingerprint(folder / name) == folder_fingerprint(other_folder / name):
                    shared[name] = component
        return shared


def open_pretrained(
    engine_class: Any,
    model_dir: Path | str | None = None,
    model: str = LAYERED_MODEL,
    generate_model: str = GENERATE_MODEL,
    edit_model: str = EDIT_MODEL,
    dtype: str | None = None,
    offload: str = "auto",
    vae_tiling: bool = False,
    quantize: str | None = None,
    device: str | None = None,
    steps: int = 50,
    check_memory: bool = True,
    cache: str = "none",
    compile: bool = False,
    gpus: int = 1,
) -> Any:
    """Build the real diffusion engine from weights found offline.

    Options (each a ``DiffusionEngine.from_pretrained`` keyword): ``model_dir`` (a folder of
    models or a Hugging Face cache; default the HF cache), ``model`` / ``generate_model`` /
    ``edit_model`` (hub ids of the layered, text-to-image and edit pipelines), ``dtype``
    (bfloat16 | float32; default bfloat16 on a GPU, float32 on a CPU), ``offload`` (auto |
    none | model | group; auto: the planner's choice), ``vae_tiling``, ``quantize`` (fp8 |
    int8 | nf4), ``device`` (default cuda), ``steps`` (default step count), ``check_memory``
    (refuse to load what the free memory cannot hold), ``cache`` (none | fbcache | dbcache),
    ``compile``, ``gpus``. The layered model must be present now; the other two are looked up
    when their op first runs, and refused then if they cannot fit beside it.
    """
    problem = diffusers_version_problem()
    if problem:
        raise EngineError(ENGINE_FAILED, problem)
    acceleration = acceleration_options(cache, compile, gpus)
    root = Path(model_dir) if model_dir is not None else None
    layered_folder = find_model(model, root)
    device = pick_device(device)
    dtype = dtype or ("float32" if device == "cpu" else "bfloat16")
    memory_options(device, dtype, "none" if offload == "auto" else offload, vae_tiling)
    if quantize:
        quantization_config(quantize, None)  # fail now, not after minutes of loading
    plan = machine_plan(device, layered_folder, quantize, offload)
    if check_memory and plan is not None:
        check_memory_plan(plan, device)
    if plan is not None and offload == "auto":
        offload, quantize = plan.offload, plan.quantize
        log.info("memory plan: %s", plan.describe())
    memory = memory_options(device, dtype, "none" if offload == "auto" else offload, vae_tiling)
    loader = PipelineLoader(dtype, quantize, {})

    def layered() -> Any:
        from diffusers import QwenImageLayeredPipeline

        return loader.load("layered", layered_folder, QwenImageLayeredPipeline)

    def text_to_image() -> Any:
        folder = find_model(generate_model, root)
        check_sibling_ram(loader, folder, "generate", check_memory)
        return loader.load("text_to_image", folder)

    def edit() -> Any:
        from diffusers import QwenImageEditPlusPipeline

        folder = find_model(edit_model, root)
        check_edit_pipeline(folder, edit_model)
        check_sibling_ram(loader, folder, "regenerate", check_memory)
        return loader.load("edit", folder, QwenImageEditPlusPipeline)

    return engine_class("qwen", layered=layered, text_to_image=text_to_image, edit=edit,
                        memory=memory, default_steps=steps, acceleration=acceleration)


def machine_plan(device: str, folder: Path, quantize: str | None, offload: str) -> Plan | None:
    """The memory plan for the layered model in ``folder`` on this machine's free GPU memory
    and RAM; None off CUDA (nothing to plan on a CPU or MPS)."""
    free = gpu_free_gib(device)
    if free is None:
        return None
    return plan_for(free, host_ram_gib(), ops=("decompose",), quantize=quantize,
                    offload=offload, sizes={"layered": folder_sizes(folder)})


def check_sibling_ram(loader: PipelineLoader, folder: Path, op: str, check: bool) -> None:
    """Refuse to load a sibling pipeline whose weights the free RAM cannot hold (the loaded
    pipelines already sit there), before the load swaps the machine to a halt."""
    if not check:
        return
    sizes = folder_sizes(folder)
    transformer = loader.quantize or "bf16"
    need = needed_ram_gib(transformer, "nf4" if transformer == "nf4" else "bf16",
                          {"sibling": sizes}) - PROCESS_RAM_GIB
    free = host_ram_gib()
    if free and need > free:
        raise EngineError(
            OUT_OF_MEMORY,
            f"{op} needs its own model ({folder.name}): about {need:.1f} GiB of RAM, and "
            f"{free:.1f} GiB is free beside the loaded models; add RAM, or run {op} on "
            "another server (`layerbridge doctor --ops decompose,generate,regenerate` prints "
            "what all three need)",
        )
