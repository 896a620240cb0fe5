"""Finding and loading model weights offline: a local folder or the Hugging Face cache.

The server never downloads: a model is fetched once on a connected machine
(``hf download Qwen/Qwen-Image-Layered``) and found here afterwards, the way
``HF_HUB_OFFLINE=1`` behaves. A missing or partial model is an :class:`EngineError`
(``model_missing``) that names the model, the folder searched and the command that fetches it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from layerbridge.engines.base import (
    ENGINE_FAILED,
    MODEL_MISSING,
    EngineError,
)

LAYERED_MODEL = "Qwen/Qwen-Image-Layered"
GENERATE_MODEL = "Qwen/Qwen-Image"
EDIT_MODEL = "Qwen/Qwen-Image-Edit-2509"
#: What each model is for, for messages and ``layerbridge models``.
MODEL_ROLES = {LAYERED_MODEL: "decompose, split (required)", GENERATE_MODEL: "generate",
               EDIT_MODEL: "regenerate"}
#: The pipeline class each known model publishes (its model_index.json ``_class_name``).
PIPELINE_CLASSES = {LAYERED_MODEL: "QwenImageLayeredPipeline", GENERATE_MODEL: "QwenImagePipeline",
                    EDIT_MODEL: "QwenImageEditPlusPipeline"}
MIN_DIFFUSERS = (0, 37)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
GIB = 1024**3


def has_torchvision() -> bool:
    """transformers' video processors need torchvision; without it we build image-only."""
    return importlib.util.find_spec("torchvision") is not None


def qwen_vl_processor(image_processor: Any, tokenizer: Any) -> Any:
    """A Qwen2VLProcessor from its parts, with or without torchvision.

    The pipelines use the processor for images and text only (captioning, edit conditions).
    Without torchvision transformers exports no video processor class and its type check
    fails on any stand-in, so an image-only subclass accepts a bare VideoProcessorMixin.
    """
    from transformers import Qwen2VLProcessor
    from transformers.video_processing_utils import VideoProcessorMixin

    if has_torchvision():
        from transformers import Qwen2VLVideoProcessor

        video_processor: Any = Qwen2VLVideoProcessor()
        return Qwen2VLProcessor(image_processor, tokenizer, video_processor)

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and isinstance(argument, VideoProcessorMixin):
                return VideoProcessorMixin
            return super().check_argument_for_proper_class(argument_name, argument)

    return ImageOnlyQwen2VLProcessor(image_processor, tokenizer, VideoProcessorMixin())


# --- finding models ---------------------------------------------------------------------------


def fetch_command(model_id: str) -> str:
    """The command that puts ``model_id`` in the Hugging Face cache on a connected machine."""
    return f"hf download {model_id}"


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder (honours HF_HUB_CACHE and HF_HOME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def missing_model(model_id: str, searched: list[Path], detail: str) -> EngineError:
    """The ``model_missing`` error: what is missing, where we looked, how to fetch it."""
    places = ", ".join(str(path) for path in searched)
    return EngineError(
        MODEL_MISSING,
        f"model {model_id} {detail} (searched: {places}). LayerBridge never downloads: on a "
        f"connected machine run `{fetch_command(model_id)}` (or `huggingface-cli download "
        f"{model_id}` with an older huggingface_hub), then copy the Hugging Face cache folder "
        "(~/.cache/huggingface/hub) to this machine or point --model-dir at it.",
    )


def find_model(model_id: str, model_dir: Path | None = None) -> Path:
    """The folder holding ``model_id``'s pipeline, complete, or a ``model_missing`` error.

    ``model_dir`` may be a Hugging Face cache folder (``models--Org--Name/snapshots/...``),
    a folder of ``Org/Name`` model folders (``hf download --local-dir``), or the model folder
    itself. Without it the Hugging Face cache is searched, offline.
    """
    roots = [Path(model_dir)] if model_dir is not None else [hub_cache_dir()]
    for root in roots:
        for candidate in _candidates(model_id, root):
            if (candidate / "model_index.json").is_file():
                problems = incomplete_parts(candidate)
                if problems:
                    raise missing_model(model_id, [candidate],
                                        "is only partly downloaded: " + "; ".join(problems[:5]))
                return candidate
    raise missing_model(model_id, roots, "is not there")


def _candidates(model_id: str, root: Path) -> list[Path]:
    """Where ``model_id`` may live under ``root``, in the order they are tried."""
    found = []
    snapshot = _cached_snapshot(model_id, root)
    if snapshot is not None:
        found.append(snapshot)
    found.append(root / model_id)
    found.append(root / model_id.split("/")[-1])
    if _index_names(root, model_id):
        found.append(root)
    return found


def _cached_snapshot(model_id: str, cache: Path) -> Path | None:
    """The snapshot ``refs/main`` points at in a Hugging Face cache, offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not (cache / f"models--{model_id.replace('/', '--')}").is_dir():
        return None
    try:
        return Path(snapshot_download(model_id, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _index_names(folder: Path, model_id: str) -> bool:
    """Whether ``folder`` itself is the model: its model_index.json names the pipeline class
    that ``model_id`` publishes (a bare folder must not pass for the layered model just
    because it holds *a* pipeline). Other ids are only found by their name."""
    index = folder / "model_index.json"
    expected = PIPELINE_CLASSES.get(model_id)
    if expected is None or not index.is_file():
        return False
    return json.loads(index.read_text()).get("_class_name") == expected


def incomplete_parts(folder: Path) -> list[str]:
    """What is missing from a pipeline folder: components named in model_index.json without
    their folder, weight shards an index lists but the folder lacks, weightless models."""
    index = json.loads((folder / "model_index.json").read_text())
    problems = []
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        part = folder / name
        if not part.is_dir():
            problems.append(f"{name}/ is missing")
            continue
        problems.extend(_missing_shards(part, name))
        if name in ("transformer", "text_encoder", "vae") and not _has_weights(part):
            problems.append(f"{name}/ has no weight files")
    return problems


def _missing_shards(part: Path, name: str) -> list[str]:
    problems = []
    for index_file in part.glob("*.index.json"):
        shards = set(json.loads(index_file.read_text()).get("weight_map", {}).values())
        problems.extend(f"{name}/{shard} is missing" for shard in sorted(shards)
                        if not (part / shard).is_file())
    return problems


def _has_weights(part: Path) -> bool:
    return any(path.is_file() and path.name.endswith(WEIGHT_SUFFIXES) for path in part.iterdir())


def folder_fingerprint(folder: Path) -> tuple:
    """What identifies a component's files without reading gigabytes: the blob names of a
    Hugging Face cache (content hashes) where files are links into it, else sizes and a hash
    of each file's first MiB. Equal fingerprints mean one copy can serve two pipelines."""
    if not folder.is_dir():
        return ()
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.is_symlink() and path.resolve().parent.name == "blobs":
            entries.append((name, path.resolve().name))
            continue
        with path.open("rb") as handle:
            head = hashlib.sha256(handle.read(1 << 20)).hexdigest()
        entries.append((name, path.stat().st_size, head))
    return tuple(entries)


def weights_size(folder: Path) -> int:
    """Bytes of weight files under ``folder`` (what loading them costs, at their stored dtype)."""
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.rglob("*")
               if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES))


# --- checks before loading --------------------------------------------------------------------


def diffusers_version_problem() -> str | None:
    """Why the installed diffusers cannot run the engine, or None when it can."""
    try:
        import diffusers
    except ImportError:
        return "diffusers is not installed: pip install 'diffusers>=0.37'"
    numbers = tuple(int(part) for part in diffusers.__version__.split(".")[:2] if part.isdigit())
    if numbers < MIN_DIFFUSERS:
        return (f"diffusers {diffusers.__version__} is too old: QwenImageLayeredPipeline arrived "
                "in 0.37; pip install -U 'diffusers>=0.37'")
    return None


def pick_device(device: str | None) -> str:
    """``device`` as given, else the CUDA GPU (or Apple's MPS); no GPU is an error with advice,
    because the real model on a CPU takes hours per job."""
    import torch

    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    raise EngineError(
        ENGINE_FAILED,
        "no CUDA GPU found: the qwen engine needs an NVIDIA GPU (see docs/gpu-engine.md). "
        "Use --engine classic (weight-free, CPU), or --device cpu to run on the CPU anyway "
        "(hours per job, about 80 GB of RAM).",
    )


# --- `layerbridge models` ---------------------------------------------------------------------


def model_report(model_id: str, model_dir: Path | None) -> tuple[bool, str]:
    """(found, one line) for ``model_id``: its folder and size, or why it is not usable."""
    role = MODEL_ROLES.get(model_id, "")
    try:
        folder = find_model(model_id, model_dir)
    except EngineError as exc:
        return False, f"  missing  {model_id}  [{role}]\n    {exc.message}"
    return True, f"  found    {model_id}  [{role}]  {weights_size(folder) / GIB:.1f} GB  {folder}"


def list_models_command(args: argparse.Namespace) -> int:
    """Print which diffusion models are found offline; 0 when the layered model is there."""
    model_dir = getattr(args, "model_dir", None)
    where = model_dir if model_dir is not None else hub_cache_dir()
    print(f"Models for the qwen engine, searched offline in {where}:")
    found_layered = False
    for model_id in MODEL_ROLES:
        found, line = model_report(model_id, model_dir)
        found_layered = found_layered or (found and model_id == LAYERED_MODEL)
        print(line)
    return 0 if found_layered else 1
