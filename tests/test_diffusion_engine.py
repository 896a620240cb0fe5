"""Every op of the diffusion engine, run for real with the tiny random-weight pipelines.

The pixels are noise; what is pinned is the plumbing: sizes, order, positions, counts, the
quirks of the pipelines (RGBA input, batch 1, buckets), seeds, progress and cancel.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from layerbridge.engines.base import (
    EngineError,
    InputImage,
    JobCancelled,
    JobContext,
    JobRequest,
    Layer,
)
from layerbridge.engines.diffusion import DiffusionEngine, auto_layer_count, generation_size

STEPS = 2


@pytest.fixture(scope="module")
def engine() -> DiffusionEngine:
    tiny = DiffusionEngine.tiny(steps=STEPS)
    tiny.warm_up()
    return tiny


def record_calls(pipe_class: type, monkeypatch) -> list[dict[str, Any]]:
    """The keyword arguments of every call of ``pipe_class`` (the real call still runs)."""
    original = pipe_class.__call__
    calls: list[dict[str, Any]] = []

    @functools.wraps(original)  # the engine reads the call's signature
    def recording(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pipe_class, "__call__", recording)
    return calls


@pytest.fixture
def layered_calls(engine, monkeypatch) -> list[dict[str, Any]]:
    return record_calls(type(engine._pipeline("layered")), monkeypatch)


def document(width: int = 72, height: int = 40) -> np.ndarray:
    """A small opaque document: grey with a red box and a blue band."""
    image = np.full((height, width, 4), 180, np.uint8)
    image[..., 3] = 255
    image[5:25, 10:40, :3] = (220, 30, 30)
    image[height - 8:, :, :3] = (20, 40, 200)
    return image


def run(
    engine: DiffusionEngine, op: str, params: dict, inputs: dict[str, InputImage] | None = None,
    ctx: JobContext | None = None,
) -> tuple[list[Layer], list[dict], JobContext]:
    events: list[dict] = []
    ctx = ctx or JobContext(events.append)
    params = {"prompt": "shapes", "seed": 1, "steps": None, "resolution": None,
              "negative_prompt": None, "guidance": None, **params}
    request = JobRequest("job", op, params, inputs or {})
    return in_worker_thread(lambda: list(engine.run(request, ctx))), events, ctx


def in_worker_thread(work: Callable[[], list[Layer]]) -> list[Layer]:
    """Run a job in a fresh thread, as the server does (torch ran these jobs 2-3x faster
    there than in the main thread on the 2-core CI host); exceptions come back here."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["layers"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["layers"]


def progress_of(events: list[dict]) -> list[dict]:
    return [event for event in events if "fraction" in event]


@pytest.fixture(scope="module")
def two_layer_job(engine) -> dict[str, Any]:
    """One 640-bucket, 2-layer decompose, recorded (calls, events, layers) for several tests;
    the pipelines' VAE dominates CPU time, so runs are shared where a test only looks."""
    pipe_class = type(engine._pipeline("layered"))
    original = pipe_class.__call__
    calls: list[dict[str, Any]] = []

    def recording(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    pipe_class.__call__ = recording
    try:
        image = document()
        layers, events, ctx = run(engine, "decompose", {"layers": 2, "seed": 11},
                                  {"image": InputImage("image", image)})
    finally:
        pipe_class.__call__ = original
    return {"image": image, "layers": layers, "events": events, "ctx": ctx, "calls": calls}


class TestDecompose:
    def test_two_layers_bottom_first_at_document_size(self, two_layer_job):
        layers, image = two_layer_job["layers"], two_layer_job["image"]
        assert two_layer_job["ctx"].layer_count == 2
        assert [layer.name for layer in layers] == ["Background", "Layer 1"]
        for layer in layers:
            assert layer.pixels.shape == image.shape and layer.pixels.dtype == np.uint8
            assert (layer.x, layer.y) == (0, 0)

    def test_pipeline_quirks_are_respected(self, two_layer_job):
        (call,) = two_layer_job["calls"]
        assert call["image"].mode == "RGBA" and call["image"].size == (72, 40)
        assert call["resolution"] == 640 and call["layers"] == 2
        assert call["num_images_per_prompt"] == 1  # batches > 1 split layers wrongly in 0.42
        assert call["negative_prompt"] == " " and call["true_cfg_scale"] == 4.0
        assert call["cfg_normalize"] is True and call["use_en_prompt"] is True
        assert call["num_inference_steps"] == STEPS and call["prompt"] == "shapes"

    def test_progress_increases_through_encode_denoise_decode(self, two_layer_job):
        progress = progress_of(two_layer_job["events"])
        fractions = [event["fraction"] for event in progress]
        assert fractions == sorted(fractions)
        stages = [event["stage"] for event in progress]
        assert stages == ["encode"] + ["denoise"] * STEPS + ["decode"]
        assert [event["step"] for event in progress if "step" in event] == [1, 2]

    def test_auto_captions_an_empty_prompt(self, engine, layered_calls):
        image = document()
        layers, events, ctx = run(engine, "decompose", {"layers": "auto", "prompt": ""},
                                  {"image": InputImage("image", image)})
        assert ctx.layer_count == auto_layer_count(image) == len(layers)
        assert progress_of(events)[0]["stage"] == "caption"
        assert layered_calls[0]["prompt"].strip()  # the caption is what the model sees

    def test_resolution_1024_comes_back_at_document_size(self, engine, layered_calls):
        layers, _, _ = run(engine, "decompose", {"layers": 1, "resolution": 1024},
                           {"image": InputImage("image", document(30, 20))})
        assert layered_calls[0]["resolution"] == 1024
        assert [layer.pixels.shape for layer in layers] == [(20, 30, 4)]

    def test_bad_resolution_is_refused(self, engine):
        with pytest.raises(EngineError) as error:
            run(engine, "decompose", {"layers": 2, "resolution": 512},
                {"image": InputImage("image", document())})
        assert error.value.code == "bad_params"


class TestSplit:
    def test_four_parts_at_the_layer_position(self, engine, layered_calls):
        layer = document(37, 53)
        layer[:, :6, 3] = 0  # a partly transparent, odd-sized layer
        layers, _, ctx = run(engine, "split", {"layers": 4},
                             {"layer": InputImage("Logo", layer, x=13, y=-4)})
        assert ctx.layer_count == 4 and layered_calls[0]["layers"] == 4
        assert [part.name for part in layers] == [f"Logo {i + 1}" for i in range(4)]
        assert all((part.x, part.y) == (13, -4) for part in layers)
        assert all(part.pixels.shape == (53, 37, 4) for part in layers)


class TestGenerate:
    def test_preview_then_layers_at_the_requested_size(self, engine, monkeypatch):
        from diffusers import QwenImagePipeline

        calls = record_calls(QwenImagePipeline, monkeypatch)
        layers, events, _ = run(engine, "generate",
                                {"prompt": "a red kite", "layers": 1, "width": 70, "height": 41})
        # generated at the (tiny engine's quarter of the) trained size nearest 70:41, never
        # at the document's own 70 x 41, then resized to it
        (call,) = calls
        assert (call["width"], call["height"]) == generation_size(70, 41, engine.generate_sizes)
        assert (call["width"], call["height"]) == (416, 224)
        (preview,) = [event["preview"] for event in events if "preview" in event]
        assert preview.shape == (41, 70, 4) and (preview[..., 3] == 255).all()
        assert [layer.pixels.shape for layer in layers] == [(41, 70, 4)]
        progress = progress_of(events)
        assert [e["fraction"] for e in progress] == sorted(e["fraction"] for e in progress)
        decodes = [e["fraction"] for e in progress if e["stage"] == "decode"]
        assert len(decodes) == 2 and decodes[0] < 0.5 < decodes[1]  # image, then layers


class TestRegenerate:
    def test_one_layer_in_place_with_a_new_alpha_cut_from_the_edit(self, engine, monkeypatch,
                                                                    layered_calls):
        """The edit may change the shape ("a bigger hat"): the layer's alpha is cut again from
        the edited picture by the layered model, not copied from the old silhouette."""
        from diffusers import QwenImageEditPlusPipeline

        edit_calls = record_calls(QwenImageEditPlusPipeline, monkeypatch)
        layer = np.zeros((16, 24, 4), np.uint8)
        layer[..., :3] = (30, 200, 30)
        yy, xx = np.mgrid[:16, :24]
        layer[..., 3] = (((xx - 12) ** 2 + (yy - 8) ** 2) < 49) * 255
        inputs = {"layer": InputImage("Leaf", layer, x=9, y=4)}
        (result,), events, ctx = run(engine, "regenerate",
                                     {"prompt": "make it autumn", "resolution": 640}, inputs)
        assert ctx.layer_count == 1
        assert (result.name, result.x, result.y) == ("Leaf", 9, 4)
        assert result.pixels.shape == layer.shape
        (cut,) = layered_calls
        assert cut["layers"] == 2 and cut["image"].size == (24, 16)
        assert not np.array_equal(result.pixels[..., 3], layer[..., 3])
        (edit,) = edit_calls  # the edit models' recommended settings
        assert edit["guidance_scale"] == 1.0 and edit["true_cfg_scale"] == 4.0
        assert edit["negative_prompt"] == " " and edit["num_inference_steps"] == STEPS
        stages = [e["stage"] for e in progress_of(events)]
        assert stages.count("decode") == 2 and stages[-1] == "decode"
        fractions = [e["fraction"] for e in progress_of(events)]
        assert fractions == sorted(fractions)


class TestCancel:
    def test_cancel_mid_denoise_stops_within_one_step(self, engine):
        events: list[dict] = []

        def report(event: dict) -> None:
            events.append(event)
            if event.get("step") == 2:
                ctx.cancel()

        ctx = JobContext(report)
        with pytest.raises(JobCancelled):
            run(engine, "decompose", {"layers": 2, "steps": 6},
                {"image": InputImage("image", document(32, 32))}, ctx=ctx)
        steps = [event["step"] for event in events if "step" in event]
        assert steps == [1, 2]
        assert "decode" not in [event.get("stage") for event in events]

    def test_after_a_cancel_the_same_seed_gives_the_same_bytes(self, engine, two_layer_job):
        """Runs after the cancel on purpose: a cancelled job must leave nothing behind."""
        again, _, _ = run(engine, "decompose", {"layers": 2, "seed": 11},
                          {"image": InputImage("image", two_layer_job["image"])})
        first = two_layer_job["layers"]
        assert [a.pixels.tobytes() for a in again] == [b.pixels.tobytes() for b in first]


def test_one_step_runs_as_two_not_as_nan(engine) -> None:
    """One step would divide by zero in the scheduler's terminal shift (blank layers)."""
    (layer,), events, _ = run(engine, "decompose", {"layers": 1, "steps": 1},
                              {"image": InputImage("image", document(32, 32))})
    assert [event["steps"] for event in events if "steps" in event] == [2, 2]
    assert layer.pixels[..., 3].any()


def test_out_of_memory_becomes_advice(engine) -> None:
    import torch

    def report(event: dict) -> None:
        if event.get("step") == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    with pytest.raises(EngineError) as error:
        run(engine, "decompose", {"layers": 1, "steps": 3},
            {"image": InputImage("image", document(32, 32))}, ctx=JobContext(report))
    assert error.value.code == "out_of_memory" and "--offload" in error.value.message


def test_unknown_op_is_unsupported(engine) -> None:
    with pytest.raises(EngineError) as error:
        list(engine.run(JobRequest("job", "paint", {}, {}), JobContext()))
    assert error.value.code == "unsupported_op"


def test_capabilities(engine) -> None:
    assert engine.name == "tiny"
    assert set(engine.ops) == {"decompose", "generate", "regenerate", "split"}
    assert engine.resolutions == (640, 1024)
    assert (engine.min_layers, engine.max_layers) == (1, 10)


def test_forwards_are_counted_for_done_timings(two_layer_job) -> None:
    """Two steps with true CFG: four transformer forwards, none skipped without a cache."""
    stats = two_layer_job["ctx"].stats
    assert stats == {"forwards_computed": 2 * STEPS, "forwards_skipped": 0}


def decompose_bytes(engine: DiffusionEngine, image: np.ndarray, **params: Any) -> list[bytes]:
    layers, _, ctx = run(engine, "decompose", {"layers": 2, "seed": 5, **params},
                         {"image": InputImage("image", image)})
    return [layer.pixels.tobytes() for layer in layers]


class TestMemoryOptions:
    """Each memory option gives the bytes the plain engine gives (the same weights, the
    same seed): they move weights, they must not change results."""

    def test_group_offload_runs_and_changes_nothing(self, two_layer_job):
        """``--offload sequential`` crashed inside accelerate on the Qwen2.5-VL embedding;
        it is now served by block-level group offload, which runs and changes nothing."""
        grouped = DiffusionEngine.tiny(steps=STEPS, offload="sequential")
        assert grouped.memory.offload == "group"
        again = decompose_bytes(grouped, two_layer_job["image"], seed=11)
        assert again == [layer.pixels.tobytes() for layer in two_layer_job["layers"]]

    def test_vae_tiling_changes_nothing_at_640(self, two_layer_job):
        """Diffusers tiles above 256 px by default, which changed the 640 bucket's bytes;
        tiling now starts above the 640 bucket."""
        tiled = DiffusionEngine.tiny(steps=STEPS, vae_tiling=True)
        again = decompose_bytes(tiled, two_layer_job["image"], seed=11)
        assert again == [layer.pixels.tobytes() for layer in two_layer_job["layers"]]


def test_idle_pipelines_step_aside_whole() -> None:
    """Without offload, every module of an idle pipeline that the active one does not share
    leaves the GPU: the transformer, and the text encoder and VAE when their files differ
    (here the text encoders differ, as two different checkpoints' would)."""
    from diffusers import QwenImageLayeredPipeline, QwenImagePipeline

    from layerbridge.engines.diffusion.memory import MemoryOptions, step_aside
    from layerbridge.engines.tiny import build_tiny_components

    first, second = build_tiny_components(0), build_tiny_components(1)
    idle = QwenImagePipeline(**second.text_to_image)  # its own text encoder
    active = QwenImageLayeredPipeline(**{**first.layered, "tokenizer": idle.tokenizer})
    shared_vae = active.vae
    idle.vae = shared_vae  # one module both use stays where it is
    step_aside(idle, active, MemoryOptions(device="cuda", dtype="bfloat16"), home="meta")
    assert next(idle.transformer.parameters()).device.type == "meta"
    assert next(idle.text_encoder.parameters()).device.type == "meta"
    assert next(shared_vae.parameters()).device.type == "cpu"
