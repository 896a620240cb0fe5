"""The memory planner against the real architectures' parameter counts (built on the meta
device from the published configs), for the cards users have: 16, 24, 48 and 80 GB."""

from __future__ import annotations

import pytest

from layerbridge.engines.diffusion.planner import (
    component_size,
    needed_ram_gib,
    needed_vram_gib,
    plan_for,
    published_sizes,
)


@pytest.fixture(scope="module")
def layered() -> dict:
    return published_sizes("layered")


def test_parameter_counts_are_the_published_architectures() -> None:
    """Counted on the meta device, not typed in: the model card's ~20B transformer, the
    Qwen2.5-VL-7B encoder (8.3B with its vision tower and untied head), a small VAE."""
    assert component_size("layered_transformer").total == pytest.approx(20.43e9, rel=0.005)
    assert component_size("transformer").total == pytest.approx(20.43e9, rel=0.005)
    assert component_size("text_encoder").total == pytest.approx(8.29e9, rel=0.005)
    assert component_size("vae_rgba").total == pytest.approx(0.127e9, rel=0.02)


def test_every_component_counts_towards_the_gpu_need(layered) -> None:
    """All on the GPU needs transformer, text encoder and VAE, not the transformer alone."""
    transformer_only = layered["transformer"].gib("bf16")
    need = needed_vram_gib("resident", "bf16", "bf16", layered)
    assert need > transformer_only + layered["text_encoder"].gib("bf16")


@pytest.mark.parametrize("vram, placement, transformer, text_encoder", [
    (80, "resident", "bf16", "bf16"),
    (48, "model", "bf16", "bf16"),
    (24, "model", "int8", "bf16"),
    (16, "model", "nf4", "nf4"),
])
def test_plan_per_card(vram, placement, transformer, text_encoder) -> None:
    plan = plan_for(vram, 64)
    assert plan.fits
    assert (plan.placement, plan.transformer, plan.text_encoder) == (
        placement, transformer, text_encoder)
    assert plan.vram_gib <= vram and plan.ram_gib <= 64


def test_the_plan_is_the_fastest_that_fits(layered) -> None:
    """At 48 GB all-resident (about 58 GiB) does not fit, model offload does."""
    assert needed_vram_gib("resident", "bf16", "bf16", layered) > 48
    assert plan_for(48, 64).placement == "model"


def test_an_8_gb_card_gets_group_offload() -> None:
    plan = plan_for(8, 64)
    assert plan.fits and plan.placement == "group" and plan.offload == "group"


def test_three_pipelines_need_more_than_64_gb_of_ram() -> None:
    """Idle pipelines wait in host RAM: three ops with their own text encoders need about
    130-160 GiB in bf16; the planner says so instead of the docs' 64 GB."""
    sizes = {pipeline: published_sizes(pipeline)
             for pipeline in ("layered", "text_to_image", "edit")}
    need = needed_ram_gib("bf16", "bf16", sizes)
    assert 130 <= need <= 175
    plan = plan_for(80, 64, ops=("decompose", "generate", "regenerate"))
    assert plan.ram_gib > 64 or plan.transformer != "bf16"


def test_nothing_fits_is_said() -> None:
    plan = plan_for(1, 8)
    assert not plan.fits


def test_a_pinned_quantisation_is_respected() -> None:
    plan = plan_for(80, 128, quantize="fp8")
    assert plan.fits and plan.transformer == "fp8" and plan.placement == "resident"
    nf4 = plan_for(16, 64, quantize="nf4")
    assert nf4.text_encoder == "nf4" and nf4.fits


def test_resolution_1024_needs_more() -> None:
    sizes = published_sizes("layered")
    assert needed_vram_gib("model", "bf16", "bf16", sizes, 1024) > needed_vram_gib(
        "model", "bf16", "bf16", sizes, 640)


def test_a_pinned_placement_keeps_bf16_unless_quantisation_is_asked() -> None:
    """--offload model on a 24 GB card without --quantize must not pass for fitting because
    an int8 plan would: the engine would load bf16 and run out of memory."""
    plan = plan_for(24, 64, offload="model")
    assert not plan.fits and plan.transformer == "bf16"
    assert plan_for(24, 64, offload="model", quantize="int8").fits
