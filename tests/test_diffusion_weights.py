"""Finding and loading weights offline, with the tiny models saved as the hub would cache them.

The tiny pipelines are written with ``save_pretrained`` into a temporary Hugging Face cache
(``models--Org--Name/blobs``, ``snapshots/<commit>`` links, ``refs/main``) and loaded by the
same code that loads the real models; a missing or partial model gives the documented error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from layerbridge import weights
from layerbridge.doctor import run_doctor
from layerbridge.engines.base import EngineError, InputImage, JobContext, JobRequest
from layerbridge.engines.diffusion import DiffusionEngine, loading
from layerbridge.engines.diffusion.planner import folder_sizes, plan_for
from layerbridge.engines.tiny import save_pipeline

COMMIT = "3f1c2a7d9e8b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"
ROLES = {"layered": weights.LAYERED_MODEL, "text_to_image": weights.GENERATE_MODEL,
         "edit": weights.EDIT_MODEL}


def save_as_hub_cache(pipe, model_id: str, cache: Path) -> Path:
    """Save ``pipe`` into ``cache`` in the hub's layout: content-addressed blobs, a snapshot of
    relative links to them, and refs/main naming the snapshot."""
    repo = cache / f"models--{model_id.replace('/', '--')}"
    staging = cache / "staging"
    save_pipeline(pipe, staging)
    snapshot = repo / "snapshots" / COMMIT
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.move(path, blob)
        link = snapshot / path.relative_to(staging)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    shutil.rmtree(staging)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """A Hugging Face cache holding the three tiny models."""
    cache = tmp_path_factory.mktemp("hub")
    tiny = DiffusionEngine.tiny()
    for role, model_id in ROLES.items():
        save_as_hub_cache(tiny._pipeline(role), model_id, cache)
    return cache


def copy_models(cache: Path, destination: Path, *model_ids: str) -> Path:
    for model_id in model_ids:
        name = f"models--{model_id.replace('/', '--')}"
        shutil.copytree(cache / name, destination / name, symlinks=True)
    return destination


def document() -> np.ndarray:
    image = np.full((24, 40, 4), 200, np.uint8)
    image[4:16, 8:30, :3] = (10, 90, 200)
    return image


class TestFinding:
    def test_the_snapshot_refs_main_points_at(self, hub_cache):
        folder = weights.find_model(weights.LAYERED_MODEL, hub_cache)
        assert folder == hub_cache / "models--Qwen--Qwen-Image-Layered" / "snapshots" / COMMIT

    def test_the_default_is_the_hugging_face_cache(self, hub_cache, monkeypatch):
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
        assert weights.find_model(weights.EDIT_MODEL).parent.parent.name == (
            "models--Qwen--Qwen-Image-Edit-2509"
        )

    def test_a_folder_of_downloaded_models(self, hub_cache, tmp_path):
        snapshot = weights.find_model(weights.LAYERED_MODEL, hub_cache)
        shutil.copytree(snapshot, tmp_path / "Qwen" / "Qwen-Image-Layered")
        assert weights.find_model(weights.LAYERED_MODEL, tmp_path) == (
            tmp_path / "Qwen" / "Qwen-Image-Layered"
        )

    def test_a_missing_model_names_id_folder_and_fetch_command(self, tmp_path):
        with pytest.raises(EngineError) as error:
            weights.find_model(weights.LAYERED_MODEL, tmp_path)
        assert error.value.code == "model_missing"
        message = error.value.message
        assert "Qwen/Qwen-Image-Layered" in message and str(tmp_path) in message
        assert "hf download Qwen/Qwen-Image-Layered" in message
        assert "huggingface-cli download Qwen/Qwen-Image-Layered" in message

    def test_a_model_folder_itself_is_found_only_for_its_own_pipeline(self, hub_cache, tmp_path):
        snapshot = weights.find_model(weights.GENERATE_MODEL, hub_cache)
        shutil.copytree(snapshot, tmp_path / "model")
        assert weights.find_model(weights.GENERATE_MODEL, tmp_path / "model") == tmp_path / "model"
        for other in (weights.LAYERED_MODEL, weights.EDIT_MODEL):
            with pytest.raises(EngineError):
                weights.find_model(other, tmp_path / "model")

    @pytest.mark.parametrize("damage", ["no_vae_folder", "no_weights", "missing_shard"])
    def test_a_partial_download_is_reported(self, hub_cache, tmp_path, damage):
        cache = copy_models(hub_cache, tmp_path, weights.LAYERED_MODEL)
        snapshot = weights.find_model(weights.LAYERED_MODEL, cache)
        if damage == "no_vae_folder":
            shutil.rmtree(snapshot / "vae")
        elif damage == "no_weights":
            for path in (snapshot / "transformer").glob("*.safetensors"):
                path.unlink()
        else:
            index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                                    "b": "model-00002-of-00002.safetensors"}}
            (snapshot / "text_encoder" / "model.safetensors.index.json").write_text(
                json.dumps(index))
        with pytest.raises(EngineError) as error:
            weights.find_model(weights.LAYERED_MODEL, cache)
        assert error.value.code == "model_missing"
        assert "partly downloaded" in error.value.message
        assert "hf download Qwen/Qwen-Image-Layered" in error.value.message

    def test_models_command_lists_what_is_found(self, hub_cache, tmp_path, capsys):
        assert weights.list_models_command(argparse.Namespace(model_dir=hub_cache)) == 0
        out = capsys.readouterr().out
        assert out.count("found") == 3
        assert weights.list_models_command(argparse.Namespace(model_dir=tmp_path)) == 1
        assert "missing  Qwen/Qwen-Image-Layered" in capsys.readouterr().out

    def test_doctor_reports_without_loading(self, hub_cache, capsys):
        code = run_doctor(argparse.Namespace(model_dir=hub_cache, engine="qwen"))
        out = capsys.readouterr().out
        assert "diffusers" in out and "Qwen/Qwen-Image-Layered" in out
        import torch

        assert code == (0 if torch.cuda.is_available() else 1)
        assert run_doctor(argparse.Namespace(model_dir=hub_cache)) == 0  # classic is ready


@pytest.fixture(scope="module")
def loaded(hub_cache) -> DiffusionEngine:
    """The engine built by the code that loads the real models, from the tiny cache."""
    engine = DiffusionEngine.from_pretrained(model_dir=hub_cache, device="cpu", steps=2)
    engine.warm_up()
    return engine


class TestLoading:
    def test_loaded_engine_decomposes(self, loaded):
        request = JobRequest("job", "decompose", {"layers": 1, "seed": 3, "prompt": "boxes"},
                             {"image": InputImage("image", document())})
        layers = list(loaded.run(request, JobContext()))
        assert loaded.name == "qwen"
        assert [layer.pixels.shape for layer in layers] == [(24, 40, 4)]

    def test_identical_components_are_loaded_once(self, loaded):
        layered = loaded._pipeline("layered")
        text_to_image = loaded._pipeline("text_to_image")
        edit = loaded._pipeline("edit")
        assert text_to_image.text_encoder is layered.text_encoder  # same blobs in the cache
        assert edit.text_encoder is layered.text_encoder
        assert edit.vae is text_to_image.vae  # both RGB
        assert text_to_image.vae is not layered.vae  # the layered VAE is RGBA: other files

    def test_a_missing_sibling_fails_only_its_op(self, hub_cache, tmp_path):
        cache = copy_models(hub_cache, tmp_path, weights.LAYERED_MODEL)
        engine = DiffusionEngine.from_pretrained(model_dir=cache, device="cpu")
        request = JobRequest("job", "generate", {"prompt": "a cat", "layers": 1,
                                                 "width": 64, "height": 64}, {})
        with pytest.raises(EngineError) as error:
            list(engine.run(request, JobContext()))
        assert error.value.code == "model_missing" and "Qwen/Qwen-Image " in error.value.message

    def test_the_layered_model_is_required_at_start(self, tmp_path):
        with pytest.raises(EngineError) as error:
            DiffusionEngine.from_pretrained(model_dir=tmp_path, device="cpu")
        assert error.value.code == "model_missing"


class TestChecks:
    def test_old_diffusers_is_named(self, monkeypatch):
        import diffusers

        monkeypatch.setattr(diffusers, "__version__", "0.36.0")
        assert "0.37" in weights.diffusers_version_problem()

    def test_no_gpu_gives_advice(self):
        import torch

        if torch.cuda.is_available() or torch.backends.mps.is_available():
            pytest.skip("a GPU is present")
        with pytest.raises(EngineError) as error:
            weights.pick_device(None)
        assert "--engine classic" in error.value.message and "--device cpu" in error.value.message

    @pytest.mark.parametrize("quantize, package", [("nf4", "bitsandbytes"), ("int8", "torchao")])
    def test_quantisation_without_its_package(self, quantize, package):
        import importlib.util

        if importlib.util.find_spec(package) or importlib.util.find_spec("bitsandbytes"):
            pytest.skip(f"{package} is installed")
        with pytest.raises(EngineError) as error:
            loading.quantization_config(quantize, None)
        assert error.value.code == "bad_params" and package in error.value.message

    @pytest.mark.parametrize("options, words", [
        ({"offload": "disk"}, "offload"),
        ({"dtype": "int4"}, "dtype"),
        ({"quantize": "nf4"}, "bitsandbytes"),
    ])
    def test_bad_options_fail_before_loading(self, hub_cache, options, words):
        import importlib.util

        if "quantize" in options and importlib.util.find_spec("bitsandbytes"):
            pytest.skip("bitsandbytes is installed")
        with pytest.raises(EngineError) as error:
            DiffusionEngine.from_pretrained(model_dir=hub_cache, device="cpu", **options)
        assert error.value.code == "bad_params" and words in error.value.message

    def test_the_plan_counts_the_models_found(self, hub_cache):
        """A folder's components are counted from its own configs on the meta device."""
        folder = weights.find_model(weights.LAYERED_MODEL, hub_cache)
        sizes = folder_sizes(folder)
        assert set(sizes) == {"transformer", "text_encoder", "vae"}
        assert 0 < sizes["transformer"].total < 10_000_000  # the tiny model, not 20B
        plan = plan_for(8, 16, sizes={"layered": sizes})
        assert plan.fits and plan.placement == "resident"

    def test_a_plan_that_cannot_fit_is_refused_with_one_that_does(self):
        plan = plan_for(24, 64, offload="none")
        with pytest.raises(EngineError) as error:
            loading.check_memory_plan(plan, "cuda")
        assert error.value.code == "out_of_memory"
        assert "--offload model --quantize int8" in error.value.message

    def test_a_one_picture_edit_model_is_refused_clearly(self, hub_cache, tmp_path):
        """The first Qwen-Image-Edit is a QwenImageEditPipeline (one picture): regenerate
        refuses it by its model_index.json, naming the models that work."""
        cache = copy_models(hub_cache, tmp_path, weights.LAYERED_MODEL, weights.EDIT_MODEL)
        snapshot = weights.find_model(weights.EDIT_MODEL, cache)
        index_file = snapshot / "model_index.json"
        index = json.loads(index_file.read_text())
        index["_class_name"] = "QwenImageEditPipeline"
        index_file.unlink()  # a link into the blobs: replace it, leave the blob alone
        index_file.write_text(json.dumps(index))
        engine = DiffusionEngine.from_pretrained(model_dir=cache, device="cpu", steps=2)
        layer = InputImage("layer", document())
        request = JobRequest("job", "regenerate", {"prompt": "a hat"}, {"layer": layer})
        with pytest.raises(EngineError) as error:
            list(engine.run(request, JobContext()))
        assert "QwenImageEditPipeline" in error.value.message
        assert "Qwen-Image-Edit-2509" in error.value.message
