"""The diffusion engine: Qwen-Image-Layered and its siblings through diffusers.

One class serves ``--engine qwen`` (real weights found offline, on a GPU) and ``--engine tiny``
(the same pipeline classes with tiny random weights built in-process, on a CPU): the two differ
only in how the components are made, the diffusers way (components are passed in).

Ops:
- ``decompose``: QwenImageLayeredPipeline on the document (RGBA), layers resized back to the
  document's size with premultiplied resampling (the model runs at a 640 or 1024 bucket).
- ``split``: the same on one layer; the parts come back at the layer's position.
- ``generate``: a text-to-image pipeline (Qwen-Image by default; any diffusers text-to-image
  pipeline by ``generate_model``) at the requested size, previewed, then decomposed.
- ``regenerate``: QwenImageEditPlusPipeline on the layer over neutral grey, with the document as
  a second picture for context; the layer keeps its own alpha (the edit model makes RGB only),
  and an optional selection mask limits where the new colour replaces the old.

Pipelines load once and stay warm; siblings are built from the same component objects so a
shared text encoder, tokenizer, processor or VAE sits in memory once.
"""

from __future__ import annotations

import inspect
import logging
import math
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from layerbridge.imaging import resize_premultiplied
from layerbridge.types import GenerateParams

log = logging.getLogger("layerbridge.diffusion")

RESOLUTIONS = (640, 1024)
DEFAULT_RESOLUTION = 640
#: The edit model is trained around one megapixel; its output bucket defaults to that.
EDIT_RESOLUTION = 1024
DEFAULT_GUIDANCE = 4.0
#: A single space, as the model card recommends: it switches true CFG on with an empty prompt.
DEFAULT_NEGATIVE_PROMPT = " "
NEUTRAL_GREY = 128
MIN_STEPS = 2
#: Qwen-Image's native area (1328 x 1328): larger documents are generated at this area, same
#: aspect, and enlarged; generating 16 MP directly would take many times longer for no detail.
GENERATE_MAX_PIXELS = 1328 * 1328
AUTO_MIN_LAYERS, AUTO_MAX_LAYERS = 2, 8
#: Share of the opaque pixels the counted colours must cover together (see auto_layer_count).
AUTO_COVERAGE = 0.8
#: Fractions of one pipeline run given to each stage, for progress reports.
STAGE_SPANS = {"caption": (0.0, 0.05), "encode": (0.05, 0.1), "denoise": (0.1, 0.95),
               "decode": (0.95, 1.0)}
OOM_ADVICE = (
    "the GPU ran out of memory: try --offload model (or sequential on cards under 24 GB), "
    "--quantize int8 or nf4, a smaller resolution (640), fewer layers, or --vae-tiling"
)


# --- the auto layer count -------------------------------------------------------------------


def auto_layer_count(rgba: np.ndarray) -> int:
    """How many layers ``layers: "auto"`` asks for, from the image's colour complexity.

    Rule: quantise colour to 2 bits per channel (64 bins) over the opaque pixels (alpha >= 128)
    of a copy at most 128 px wide; take the fewest bins that together cover 80 % of those
    pixels (specks and anti-aliasing do not count, busy images need many bins); add one when
    at least 1 % of the image is transparent; clamp to 2..8. A four-colour flat graphic gets 4,
    a logo on transparency one more, a photo or noise the maximum. Cheap and deterministic.
    """
    step = max(1, int(math.ceil(max(rgba.shape[:2]) / 128)))
    small = rgba[::step, ::step]
    opaque = small[..., 3] >= 128
    count = 0
    if opaque.any():
        bins = small[opaque][:, :3].astype(np.int32) >> 6
        codes = (bins[:, 0] << 4) | (bins[:, 1] << 2) | bins[:, 2]
        shares = np.sort(np.bincount(codes, minlength=64))[::-1] / codes.size
        count = int(np.searchsorted(np.cumsum(shares), AUTO_COVERAGE - 1e-9) + 1)
    if (~opaque).mean() >= 0.01:
        count += 1
    return int(min(max(count, AUTO_MIN_LAYERS), AUTO_MAX_LAYERS))


# --- small image helpers --------------------------------------------------------------------


def to_rgba_pil(rgba: np.ndarray) -> Any:
    """The layered pipeline needs RGBA PIL input: an RGB image crashes its 4-channel VAE."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8), "RGBA")


def over_grey(rgba: np.ndarray) -> Any:
    """``rgba`` over neutral grey as an RGB PIL image (what an RGB edit model can see)."""
    from PIL import Image

    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + NEUTRAL_GREY * (1.0 - alpha)
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def pil_to_rgba(image: Any, size: tuple[int, int]) -> np.ndarray:
    """A pipeline's PIL output as uint8 RGBA at ``size`` (width, height), resampled
    premultiplied so that soft edges keep their colour."""
    return resize_premultiplied(np.asarray(image.convert("RGBA")), size)


def bucket_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The (width, height) of area ``resolution**2`` with the input's aspect, multiples of 32
    (the same rule as the Qwen pipelines' ``calculate_dimensions``)."""
    w = math.sqrt(resolution * resolution * width / height)
    h = w * height / width
    return max(32, round(w / 32) * 32), max(32, round(h / 32) * 32)


def generation_size(width: int, height: int) -> tuple[int, int]:
    """The size to generate a ``width`` x ``height`` document at: multiples of 16 (the
    pipelines' latent patch), at most :data:`GENERATE_MAX_PIXELS`, same aspect."""
    scale = min(1.0, math.sqrt(GENERATE_MAX_PIXELS / (width * height)))
    return max(16, int(width * scale) // 16 * 16), max(16, int(height * scale) // 16 * 16)


def mask_in_layer(mask: Any, layer: Any) -> np.ndarray:
    """The selection (mask alpha, 0..1) over the layer's pixels, from document placement."""
    selected = np.zeros((layer.height, layer.width), np.float32)
    dx, dy = mask.x - layer.x, mask.y - layer.y
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + mask.width, layer.width), min(dy + mask.height, layer.height)
    if x1 > x0 and y1 > y0:
        crop = mask.pixels[y0 - dy:y1 - dy, x0 - dx:x1 - dx, 3]
        selected[y0:y1, x0:x1] = crop.astype(np.float32) / 255.0
    return selected


# --- progress -------------------------------------------------------------------------------


class StageProgress:
    """Maps one pipeline run's stages and steps into ``[lo, hi]`` of the job's progress and
    checks for cancel at every step (the pipeline's ``callback_on_step_end``)."""

    def __init__(self, ctx: JobContext, lo: float, hi: float, steps: int) -> None:
        self.ctx, self.lo, self.hi, self.steps = ctx, lo, hi, steps

    def _at(self, fraction: float) -> float:
        return self.lo + (self.hi - self.lo) * fraction

    def stage(self, name: str) -> None:
        """Announce the start of a stage (caption, encode, denoise, decode), then check cancel."""
        self.ctx.check_cancelled()
        self.ctx.progress(self._at(STAGE_SPANS[name][0]), name)

    def on_step_end(self, pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        """Report the finished step; raise JobCancelled out of the pipeline on cancel, so the
        job stops within one step and skips the decode."""
        lo, hi = STAGE_SPANS["denoise"]
        done = step + 1
        self.ctx.progress(self._at(lo + (hi - lo) * done / self.steps), "denoise", done,
                          self.steps)
        self.ctx.check_cancelled()
        if done == self.steps:
            self.stage("decode")
        return {}


# --- the engine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryOptions:
    """How pipelines are placed: the options for smaller GPUs (see docs/gpu-engine.md)."""

    device: str = "cpu"
    dtype: str = "float32"
    offload: str = "none"  # none | model | sequential
    vae_tiling: bool = False


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
    ) -> None:
        self.name = name
        self.memory = memory
        self.default_steps = default_steps
        self.slots = {"layered": PipelineSlot(layered),
                      "text_to_image": PipelineSlot(text_to_image), "edit": PipelineSlot(edit)}
        self._active: str | None = None

    # -- construction --

    @classmethod
    def tiny(cls, steps: int = 2, weight_seed: int = 0, **memory: Any) -> DiffusionEngine:
        """The qwen code path with tiny random weights (CPU, seconds, no files).

        ``steps`` is the default step count; ``weight_seed`` picks the random weights. Memory
        options (``device``, ``dtype``, ``offload``, ``vae_tiling``) are accepted as for the
        real engine so their code path is exercised too.
        """
        from diffusers import QwenImageEditPlusPipeline, QwenImageLayeredPipeline, QwenImagePipeline

        from layerbridge.engines.tiny import build_tiny_components

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
        )

    @classmethod
    def from_pretrained(cls, **options: Any) -> DiffusionEngine:
        """The real engine from weights found offline; the options are documented at
        :func:`layerbridge.weights.open_pretrained`."""
        from layerbridge.weights import open_pretrained

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
        self, rgba: np.ndarray, params: dict, ctx: JobContext, lo: float, hi: float
    ) -> list[np.ndarray]:
        """The layered pipeline on ``rgba``: layers bottom first, at ``rgba``'s size."""
        count = self._layer_count(params.get("layers", "auto"), rgba)
        ctx.set_layer_count(count)
        resolution = self._resolution(params.get("resolution"), DEFAULT_RESOLUTION)
        steps = self._steps(params)
        seed = _seed(params.get("seed"))
        pipe = self._pipeline("layered")
        progress = StageProgress(ctx, lo, hi, steps)
        image = to_rgba_pil(rgba)
        prompt = (params.get("prompt") or "").strip()
        if not prompt:
            progress.stage("caption")
            prompt = self._caption(pipe, image, resolution, seed)
        progress.stage("encode")
        output = self._call(
            pipe, progress, image=image, prompt=prompt, layers=count, resolution=resolution,
            num_inference_steps=steps, generator=_generator(seed),
            negative_prompt=_negative(params), true_cfg_scale=_guidance(params),
            cfg_normalize=True, use_en_prompt=True, num_images_per_prompt=1, output_type="pil",
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
        """Generate an opaque RGBA image of ``size`` (width, height) from the prompt."""
        steps = self._steps(params)
        pipe = self._pipeline("text_to_image")
        progress = StageProgress(ctx, 0.0, 0.5, steps)
        width, height = generation_size(*size)
        progress.stage("encode")
        kwargs = dict(prompt=params["prompt"], negative_prompt=_negative(params), width=width,
                      height=height, num_inference_steps=steps,
                      generator=_generator(_seed(params.get("seed"))), output_type="pil")
        accepted = inspect.signature(pipe.__call__).parameters
        guidance_name = "true_cfg_scale" if "true_cfg_scale" in accepted else "guidance_scale"
        kwargs[guidance_name] = _guidance(params)
        kwargs = {key: value for key, value in kwargs.items() if key in accepted}
        output = self._call(pipe, progress, **kwargs)
        return pil_to_rgba(output.images[0], size)

    def _edit(self, source: Any, request: JobRequest, ctx: JobContext) -> np.ndarray:
        """Qwen-Image-Edit on the layer; the result keeps the layer's alpha (see module doc)."""
        params = request.params
        steps = self._steps(params)
        resolution = self._resolution(params.get("resolution"), EDIT_RESOLUTION)
        pipe = self._pipeline("edit")
        progress = StageProgress(ctx, 0.0, 1.0, steps)
        images = [over_grey(source.pixels)]
        document = request.inputs.get("document")
        prompt = params["prompt"]
        if document is not None:
            images.append(over_grey(document.pixels))
            prompt = f"Picture 1 is one layer of the document in picture 2. {prompt}"
        width, height = bucket_size(source.width, source.height, resolution)
        progress.stage("encode")
        output = self._call(
            pipe, progress, image=images, prompt=prompt, negative_prompt=_negative(params),
            true_cfg_scale=_guidance(params), width=width, height=height,
            num_inference_steps=steps, generator=_generator(_seed(params.get("seed"))),
            num_images_per_prompt=1, output_type="pil",
        )
        edited = pil_to_rgba(output.images[0], (source.width, source.height))
        return self._keep_alpha(source, edited, request.inputs.get("mask"))

    @staticmethod
    def _keep_alpha(source: Any, edited: np.ndarray, mask: Any) -> np.ndarray:
        """New colour inside the selection (all of it without a mask), the input's alpha."""
        result = source.pixels.copy()
        if mask is None:
            result[..., :3] = edited[..., :3]
            return result
        weight = mask_in_layer(mask, source)[..., None]
        blended = edited[..., :3] * weight + source.pixels[..., :3] * (1.0 - weight)
        result[..., :3] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return result

    def _call(self, pipe: Any, progress: StageProgress, **kwargs: Any) -> Any:
        """Run a pipeline with per-step progress and cancel; free offload hooks either way."""
        import torch

        try:
            with torch.inference_mode():
                return pipe(callback_on_step_end=progress.on_step_end,
                            callback_on_step_end_tensor_inputs=["latents"], **kwargs)
        except torch.OutOfMemoryError as exc:
            raise EngineError(OUT_OF_MEMORY, OOM_ADVICE) from exc
        finally:
            pipe.maybe_free_model_hooks()

    # -- helpers --

    def _pipeline(self, which: str) -> Any:
        """The pipeline ``which``, loaded (once) and placed on the device by the memory
        options; without offload the other pipelines' transformers step aside to the CPU."""
        slot = self.slots[which]
        first_use = slot.loaded is None
        pipe = slot.get()
        if first_use or self._active != which:
            for name, other in self.slots.items():
                if name != which and other.loaded is not None:
                    step_aside(other.loaded, self.memory)
            place_pipeline(pipe, self.memory)
            self._active = which
        return pipe

    def _steps(self, params: dict) -> int:
        """The job's step count, at least :data:`MIN_STEPS`: with one step the Qwen scheduler's
        terminal shift divides by zero and the pipeline returns NaN (blank layers)."""
        return max(MIN_STEPS, int(params.get("steps") or self.default_steps))

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


def memory_options(device: str, dtype: str, offload: str, vae_tiling: bool) -> MemoryOptions:
    """Validated :class:`MemoryOptions` (a bad name is the user's to fix, not a crash)."""
    if dtype not in ("bfloat16", "float16", "float32"):
        raise EngineError(BAD_PARAMS, f"dtype must be bfloat16, float16 or float32, not {dtype!r}")
    if offload not in ("none", "model", "sequential"):
        raise EngineError(BAD_PARAMS, f"offload must be none, model or sequential, not {offload!r}")
    return MemoryOptions(device=device, dtype=dtype, offload=offload, vae_tiling=vae_tiling)


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def place_pipeline(pipe: Any, memory: MemoryOptions) -> None:
    """Put ``pipe`` where the memory options say: all on the device, or offloaded to the CPU
    model by model (``model``: a few GB extra, small slowdown) or layer by layer
    (``sequential``: least memory, slowest). Hooks are set again each time a pipeline becomes
    active, because siblings share modules and the last pipeline to set a hook owns it."""
    try:
        if memory.offload == "model":
            pipe.enable_model_cpu_offload(device=memory.device)
        elif memory.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=memory.device)
        else:
            pipe.to(memory.device)
    except (RuntimeError, ValueError) as exc:
        if "out of memory" in str(exc).lower():
            raise EngineError(OUT_OF_MEMORY, OOM_ADVICE) from exc
        raise EngineError(ENGINE_FAILED, f"cannot place the pipeline on {memory.device} with "
                          f"offload={memory.offload}: {exc}") from exc
    if memory.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()


def step_aside(pipe: Any, memory: MemoryOptions) -> None:
    """Move an idle pipeline's transformer (its largest part, never shared) to the CPU so the
    active pipeline fits; offload modes already keep idle modules there."""
    if memory.offload == "none" and memory.device != "cpu":
        pipe.transformer.to("cpu")


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
