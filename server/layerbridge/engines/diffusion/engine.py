"""The diffusion engine: Qwen-Image-Layered and its siblings through diffusers.

One class serves ``--engine qwen`` (real weights found offline, on a GPU) and ``--engine tiny``
(the same pipeline classes with tiny random weights built in-process, on a CPU): the two differ
only in how the components are made, the diffusers way (components are passed in).

Ops:
- ``decompose``: QwenImageLayeredPipeline on the document (RGBA), layers resized back to the
  document's size with premultiplied resampling (the model runs at a 640 or 1024 bucket).
- ``split``: the same on one layer; the parts come back at the layer's position.
- ``generate``: a text-to-image pipeline (Qwen-Image by default; any diffusers text-to-image
  pipeline by ``generate_model``) at the trained size nearest the document's aspect, resized
  to the document, previewed, then decomposed.
- ``regenerate``: QwenImageEditPlusPipeline on the layer over neutral grey, with the document as
  a second picture for context, at the edit models' recommended settings; the edit model makes
  RGB only, so the layered model cuts the edited object out again (a two-layer decompose of the
  edited picture): a new shape gets a new alpha. An optional selection mask limits the change.

Pipelines load once and stay warm; siblings are built from the same component objects so a
shared text encoder, tokenizer, processor or VAE sits in memory once.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from layerbridge.engines.base import (
    BAD_PARAMS,
    ENGINE_FAILED,
    OUT_OF_MEMORY,
    UNSUPPORTED_OP,
    Engine,
    EngineError,
    JobCancelled,
    JobContext,
    JobRequest,
    Layer,
    required_input,
)
from layerbridge.engines.diffusion.acceleration import Acceleration, accelerate, counter_for
from layerbridge.engines.diffusion.images import (
    TRAINED_SIZES,
    auto_layer_count,
    bucket_size,
    generation_size,
    mask_in_layer,
    over_grey,
    pil_to_rgba,
    scaled_sizes,
    to_rgba_pil,
)
from layerbridge.engines.diffusion.memory import (
    OOM_ADVICE,
    VAE_TILE,
    VAE_TILE_STRIDE,
    VAE_TILING_MIN_AREA,
    MemoryOptions,
    memory_options,
    place_pipeline,
    step_aside,
    torch_dtype,
)
from layerbridge.engines.diffusion.progress import StageProgress
from layerbridge.types import GenerateParams

log = logging.getLogger("layerbridge.diffusion")

RESOLUTIONS = (640, 1024)
DEFAULT_RESOLUTION = 640
#: The edit model is trained around one megapixel; its output bucket defaults to that.
EDIT_RESOLUTION = 1024
DEFAULT_GUIDANCE = 4.0
#: A single space, as the model card recommends: it switches true CFG on with an empty prompt.
DEFAULT_NEGATIVE_PROMPT = " "
MIN_STEPS = 2
#: The edit models' recommended settings (Qwen-Image-Edit-2509/2511 model cards): 40 steps,
#: true CFG 4 with negative " ", and guidance_scale 1.0 (the distilled-guidance input unused).
EDIT_STEPS = 40
EDIT_GUIDANCE_SCALE = 1.0
#: What the layered model is told when it cuts an edited layer out again.
MATTE_PROMPT = "one object on a plain grey background"
#: Share of a regenerate job's progress given to the edit; the cut-out takes the rest.
EDIT_SHARE = 0.7


# --- the engine -----------------------------------------------------------------------------


class PipelineSlot:
    """One pipeline, built on first use by ``factory`` and kept warm afterwards."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._pipe: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> Any:
        return self._pipe

    def get(self) -> Any:
        with self._lock:
            if self._pipe is None:
                self._pipe = self._factory()
                self._pipe.set_progress_bar_config(disable=True)
            return self._pipe


class DiffusionEngine(Engine):
    """Diffusion ops over three pipelines: layered (decompose, split), text-to-image (generate)
    and edit (regenerate). Build it with :meth:`from_pretrained` or :meth:`tiny`."""

    ops = ("decompose", "generate", "regenerate", "split")
    min_layers = 1
    max_layers = 10
    resolutions = RESOLUTIONS

    def __init__(
        self,
        name: str,
        layered: Callable[[], Any],
        text_to_image: Callable[[], Any],
        edit: Callable[[], Any],
        memory: MemoryOptions,
        default_steps: int = 50,
        acceleration: Acceleration | None = None,
        generate_sizes: tuple[tuple[int, int], ...] = TRAINED_SIZES,
    ) -> None:
        self.name = name
        self.memory = memory
        self.default_steps = default_steps
        self.acceleration = acceleration or Acceleration()
        self.generate_sizes = generate_sizes
        self.slots = {"layered": PipelineSlot(layered),
                      "text_to_image": PipelineSlot(text_to_image), "edit": PipelineSlot(edit)}
        self._active: str | None = None

    # -- construction --

    @classmethod
    def tiny(cls, steps: int = 2, weight_seed: int = 0, cache: str = "none",
             compile: bool = False, **memory: Any) -> DiffusionEngine:
        """The qwen code path with tiny random weights (CPU, seconds, no files).

        ``steps`` is the default step count; ``weight_seed`` picks the random weights. Memory
        options (``device``, ``dtype``, ``offload``, ``vae_tiling``) and the speed options
        (``cache``, ``compile``) are accepted as for the real engine so their code paths are
        exercised too. Trained sizes for generate are a quarter of the real ones.
        """
        from diffusers import QwenImageEditPlusPipeline, QwenImageLayeredPipeline, QwenImagePipeline

        from layerbridge.engines.diffusion.acceleration import acceleration_options
        from layerbridge.engines.tiny import TINY_CACHE_KNOBS, build_tiny_components

        ignored = sorted(set(memory) - {"device", "dtype", "offload", "vae_tiling"})
        if ignored:
            log.warning("the tiny engine has no files or quantisation; ignoring %s", ignored)
        components = build_tiny_components(weight_seed)
        options = memory_options(memory.get("device") or "cpu", memory.get("dtype") or "float32",
                                 memory.get("offload") or "none",
                                 bool(memory.get("vae_tiling")))

        def build(pipeline_class: Any, parts: dict) -> Callable[[], Any]:
            if options.dtype == "float32":  # as built; a cast would only warn
                return lambda: pipeline_class(**parts)
            return lambda: pipeline_class(**parts).to(dtype=torch_dtype(options.dtype))

        return cls(
            "tiny",
            layered=build(QwenImageLayeredPipeline, components.layered),
            text_to_image=build(QwenImagePipeline, components.text_to_image),
            edit=build(QwenImageEditPlusPipeline, components.edit),
            memory=options,
            default_steps=steps,
            acceleration=acceleration_options(cache, compile, **TINY_CACHE_KNOBS),
            generate_sizes=scaled_sizes(TRAINED_SIZES, 0.25),
        )

    @classmethod
    def from_pretrained(cls, **options: Any) -> DiffusionEngine:
        """The real engine from weights found offline; the options are documented at
        :func:`layerbridge.engines.diffusion.loading.open_pretrained`."""
        from layerbridge.engines.diffusion.loading import open_pretrained

        return open_pretrained(cls, **options)

    # -- engine interface --

    def warm_up(self) -> None:
        """Load the layered pipeline now (decompose is the main op); the others on first use."""
        self._pipeline("layered")

    def run(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        handlers = {"decompose": self._run_decompose, "split": self._run_split,
                    "generate": self._run_generate, "regenerate": self._run_regenerate}
        handler = handlers.get(request.op)
        if handler is None:
            raise EngineError(UNSUPPORTED_OP, self.unsupported_message(request.op))
        try:
            yield from handler(request, ctx)
        except (EngineError, JobCancelled):
            raise
        except Exception as exc:
            raise _as_engine_error(exc) from exc

    # -- ops --

    def _run_decompose(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        source = required_input(request, "image")
        layers = self._decompose(source.pixels, request.params, ctx, 0.0, 1.0)
        for index, pixels in enumerate(layers):
            name = "Background" if index == 0 else f"Layer {index}"
            yield Layer(name=name, pixels=pixels, x=source.x, y=source.y)

    def _run_split(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        source = required_input(request, "layer")
        layers = self._decompose(source.pixels, request.params, ctx, 0.0, 1.0)
        for index, pixels in enumerate(layers):
            yield Layer(name=f"{source.name} {index + 1}", pixels=pixels, x=source.x, y=source.y)

    def _run_generate(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        params = request.params
        assert isinstance(params, GenerateParams)  # JobRequest types params by its op
        size = (params.width, params.height)
        image = self._text_to_image(params, size, ctx)
        ctx.preview(image)
        layers = self._decompose(image, params, ctx, 0.5, 1.0)
        for index, pixels in enumerate(layers):
            name = "Background" if index == 0 else f"Layer {index}"
            yield Layer(name=name, pixels=pixels)

    def _run_regenerate(self, request: JobRequest, ctx: JobContext) -> Iterator[Layer]:
        source = required_input(request, "layer")
        ctx.set_layer_count(1)
        pixels = self._edit(source, request, ctx)
        yield Layer(name=source.name, pixels=pixels, x=source.x, y=source.y)

    # -- pipeline runs --

    def _decompose(
        self, rgba: np.ndarray, params: dict, ctx: JobContext, lo: float, hi: float,
        layers: int | None = None,
    ) -> list[np.ndarray]:
        """The layered pipeline on ``rgba``: layers bottom first, at ``rgba``'s size
        (``layers`` overrides the job's count, for the cut-out after an edit)."""
        count = layers or self._layer_count(params.get("layers", "auto"), rgba)
        if layers is None:
            ctx.set_layer_count(count)
        resolution = self._resolution(params.get("resolution"), DEFAULT_RESOLUTION)
        steps = self._steps(params)
        seed = _seed(params.get("seed"))
        pipe = self._pipeline("layered")
        progress = StageProgress(ctx, lo, hi, steps)
        image = to_rgba_pil(rgba)
        prompt = MATTE_PROMPT if layers else (params.get("prompt") or "").strip()
        if not prompt:
            progress.stage("caption")
            prompt = self._caption(pipe, image, resolution, seed)
        progress.stage("encode")
        output = self._call(
            pipe, progress, ctx, resolution * resolution, image=image, prompt=prompt,
            layers=count, resolution=resolution, num_inference_steps=steps,
            generator=_generator(seed), negative_prompt=_negative(params),
            true_cfg_scale=_guidance(params), cfg_normalize=True, use_en_prompt=True,
            num_images_per_prompt=1, output_type="pil",
        )
        size = (rgba.shape[1], rgba.shape[0])
        return [pil_to_rgba(layer, size) for layer in output.images[0]]

    def _caption(self, pipe: Any, image: Any, resolution: int, seed: int) -> str:
        """Caption the image ourselves (as the pipeline would for an empty prompt) so the stage
        is reported and cancellable; seeded so that sampling decoders reproduce too."""
        import torch

        width, height = bucket_size(image.width, image.height, resolution)
        shown = pipe.image_processor.resize(image, height, width)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            caption = pipe.get_image_caption(shown, use_en_prompt=True,
                                             device=pipe._execution_device)
        # An empty caption would make the pipeline caption again; any text will do for CFG.
        return caption.strip() or "an image"

    def _text_to_image(self, params: dict, size: tuple[int, int], ctx: JobContext) -> np.ndarray:
        """Generate an opaque RGBA image of ``size`` (width, height) from the prompt, at the
        trained size nearest its aspect (the model is sharp only there), then resized."""
        steps = self._steps(params)
        pipe = self._pipeline("text_to_image")
        progress = StageProgress(ctx, 0.0, 0.5, steps)
        width, height = generation_size(*size, sizes=self.generate_sizes)
        progress.stage("encode")
        kwargs = dict(prompt=params["prompt"], negative_prompt=_negative(params), width=width,
                      height=height, num_inference_steps=steps,
                      generator=_generator(_seed(params.get("seed"))), output_type="pil")
        accepted = inspect.signature(pipe.__call__).parameters
        guidance_name = "true_cfg_scale" if "true_cfg_scale" in accepted else "guidance_scale"
        kwargs[guidance_name] = _guidance(params)
        kwargs = {key: value for key, value in kwargs.items() if key in accepted}
        output = self._call(pipe, progress, ctx, width * height, **kwargs)
        return pil_to_rgba(output.images[0], size)

    def _edit(self, source: Any, request: JobRequest, ctx: JobContext) -> np.ndarray:
        """Qwen-Image-Edit on the layer over grey, then the layered model cuts the edited
        object out of the grey (see module doc); a selection mask limits the change."""
        params = request.params
        steps = self._steps(params, default=min(self.default_steps, EDIT_STEPS))
        resolution = self._resolution(params.get("resolution"), EDIT_RESOLUTION)
        pipe = self._pipeline("edit")
        progress = StageProgress(ctx, 0.0, EDIT_SHARE, steps)
        images = [over_grey(source.pixels)]
        document = request.inputs.get("document")
        prompt = params["prompt"]
        if document is not None:
            images.append(over_grey(document.pixels))
            prompt = f"Picture 1 is one layer of the document in picture 2. {prompt}"
        width, height = bucket_size(source.width, source.height, resolution)
        progress.stage("encode")
        output = self._call(
            pipe, progress, ctx, width * height, image=images, prompt=prompt,
            negative_prompt=_negative(params), true_cfg_scale=_guidance(params),
            guidance_scale=EDIT_GUIDANCE_SCALE, width=width, height=height,
            num_inference_steps=steps, generator=_generator(_seed(params.get("seed"))),
            num_images_per_prompt=1, output_type="pil",
        )
        edited = pil_to_rgba(output.images[0], (source.width, source.height))
        matte_params = {**params, "resolution": None}
        cut = self._decompose(edited, matte_params, ctx, EDIT_SHARE, 1.0, layers=2)[-1]
        return self._within_selection(source, cut, request.inputs.get("mask"))

    @staticmethod
    def _within_selection(source: Any, edited: np.ndarray, mask: Any) -> np.ndarray:
        """The edited layer (colour and alpha) inside the selection, all of it without a
        mask; outside it the source stays as it was."""
        if mask is None:
            return edited
        weight = mask_in_layer(mask, source)[..., None]
        blended = edited.astype(np.float32) * weight + source.pixels * (1.0 - weight)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)

    def _call(self, pipe: Any, progress: StageProgress, ctx: JobContext, area: int,
              **kwargs: Any) -> Any:
        """Run a pipeline with per-step progress and cancel; count the transformer's
        forwards (computed, skipped by the step cache) into the job's stats; free offload
        hooks either way. ``area`` is the decoded size in pixels (for VAE tiling)."""
        import torch

        configure_vae_tiling(pipe, self.memory, area)
        counter = counter_for(pipe)
        forwards_before, computed_before = counter.totals()
        try:
            with torch.inference_mode():
                return pipe(callback_on_step_end=progress.on_step_end,
                            callback_on_step_end_tensor_inputs=["latents"], **kwargs)
        except torch.OutOfMemoryError as exc:
            raise EngineError(OUT_OF_MEMORY, OOM_ADVICE) from exc
        finally:
            forwards, computed = counter.totals()
            ran, full = forwards - forwards_before, computed - computed_before
            ctx.stats["forwards_computed"] = ctx.stats.get("forwards_computed", 0) + full
            ctx.stats["forwards_skipped"] = ctx.stats.get("forwards_skipped", 0) + ran - full
            pipe.maybe_free_model_hooks()

    # -- helpers --

    def _pipeline(self, which: str) -> Any:
        """The pipeline ``which``, loaded (once) and placed on the device by the memory
        options; without offload the other pipelines' modules step aside to the CPU."""
        slot = self.slots[which]
        first_use = slot.loaded is None
        pipe = slot.get()
        if first_use or self._active != which:
            for name, other in self.slots.items():
                if name != which and other.loaded is not None:
                    step_aside(other.loaded, pipe, self.memory)
            place_pipeline(pipe, self.memory)
            accelerate(pipe, self.acceleration)
            self._active = which
        return pipe

    def _steps(self, params: dict, default: int | None = None) -> int:
        """The job's step count, at least :data:`MIN_STEPS`: with one step the Qwen scheduler's
        terminal shift divides by zero and the pipeline returns NaN (blank layers)."""
        return max(MIN_STEPS, int(params.get("steps") or default or self.default_steps))

    def _layer_count(self, value: Any, rgba: np.ndarray) -> int:
        if value is None or value == "auto":
            return auto_layer_count(rgba)
        if isinstance(value, bool) or not isinstance(value, int):
            raise EngineError(BAD_PARAMS, 'layers must be an integer or "auto"')
        if not self.min_layers <= value <= self.max_layers:
            raise EngineError(BAD_PARAMS, f"layers must be {self.min_layers}..{self.max_layers}")
        return value

    def _resolution(self, value: Any, default: int) -> int:
        if value is None:
            return default
        if value not in self.resolutions:
            raise EngineError(BAD_PARAMS, f"resolution must be one of {self.resolutions}")
        return int(value)


# --- module helpers -------------------------------------------------------------------------


def configure_vae_tiling(pipe: Any, memory: MemoryOptions, area: int) -> None:
    """Tile the VAE only above the 640 bucket's area: at or below it one tile covers the image
    and tiling would only change the bytes (diffusers tiles above 256 px by default)."""
    if not memory.vae_tiling or not hasattr(pipe.vae, "enable_tiling"):
        return
    if area > VAE_TILING_MIN_AREA:
        pipe.vae.enable_tiling(tile_sample_min_height=VAE_TILE, tile_sample_min_width=VAE_TILE,
                               tile_sample_stride_height=VAE_TILE_STRIDE,
                               tile_sample_stride_width=VAE_TILE_STRIDE)
    else:
        pipe.vae.disable_tiling()


def _seed(value: Any) -> int:
    """The job's seed; ``None`` draws one (logged, so a good result can be made again)."""
    if value is not None:
        return int(value)
    seed = secrets.randbits(63)
    log.info("random seed %d", seed)
    return seed


def _generator(seed: int) -> Any:
    """A CPU generator: diffusers draws noise on it and moves it, so a seed gives the same
    noise on any device."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)


def _negative(params: dict) -> str:
    value = params.get("negative_prompt")
    return DEFAULT_NEGATIVE_PROMPT if value is None or value == "" else value


def _guidance(params: dict) -> float:
    value = params.get("guidance")
    return DEFAULT_GUIDANCE if value is None else float(value)


def _as_engine_error(exc: Exception) -> EngineError:
    """Map what escapes a pipeline to a stable error the user can read."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return EngineError(OUT_OF_MEMORY, OOM_ADVICE)
    return EngineError(ENGINE_FAILED, f"the diffusion pipeline failed: {type(exc).__name__}: {exc}")
