"""The diffusion engine's own maths and rules, without running a pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from layerbridge.engines.base import EngineError, InputImage, JobCancelled, JobContext
from layerbridge.engines.diffusion import (
    AUTO_MAX_LAYERS,
    AUTO_MIN_LAYERS,
    PHOTO_LAYERS,
    TRAINED_SIZES,
    DiffusionEngine,
    MemoryOptions,
    StageProgress,
    auto_layer_count,
    bucket_size,
    generation_size,
    mask_in_layer,
    memory_options,
    over_grey,
    pil_to_rgba,
    to_rgba_pil,
)


def flat_image(colours: list[tuple[int, int, int]], width: int = 120,
               height: int = 40) -> np.ndarray:
    """Vertical stripes of equal width, one per colour, fully opaque."""
    image = np.zeros((height, width, 4), np.uint8)
    image[..., 3] = 255
    stripe = width // len(colours)
    for index, colour in enumerate(colours):
        image[:, index * stripe:(index + 1) * stripe, :3] = colour
    return image


class TestAutoLayerCount:
    def test_one_flat_colour_still_gives_the_minimum(self) -> None:
        assert auto_layer_count(flat_image([(200, 10, 10)])) == AUTO_MIN_LAYERS

    def test_counts_distinct_colour_regions(self) -> None:
        colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
        assert auto_layer_count(flat_image(colours)) == 4

    def test_transparency_adds_one(self) -> None:
        image = flat_image([(250, 0, 0), (0, 250, 0), (0, 0, 250)])
        image[:, :10, 3] = 0
        assert auto_layer_count(image) == 4

    def test_tiny_specks_do_not_count(self) -> None:
        image = flat_image([(250, 0, 0), (0, 0, 250)])
        image[:2, :2, :3] = (0, 250, 0)  # far below the 20 % the rule ignores
        assert auto_layer_count(image) == 2

    def test_a_photo_gets_the_model_cards_four_layers(self) -> None:
        """A photo (here noise: more colour bins than any flat graphic) gets 4 layers, the
        recommended count, not the maximum of 8 (twice the compute for nothing)."""
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)
        noise[..., 3] = 255
        assert auto_layer_count(noise) == PHOTO_LAYERS == 4

    def test_a_smooth_gradient_photo_gets_four_layers(self) -> None:
        y, x = np.mgrid[0:96, 0:128]
        image = np.zeros((96, 128, 4), np.uint8)
        image[..., 0] = x * 2
        image[..., 1] = y * 2
        image[..., 2] = (x + y) % 256
        image[..., 3] = 255
        assert auto_layer_count(image) == 4

    def test_a_busy_flat_graphic_is_not_taken_for_a_photo(self) -> None:
        colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250),
                   (250, 0, 250), (120, 120, 120), (250, 250, 250)]
        # eight equal stripes: seven of them cover the 80 % the rule counts
        assert auto_layer_count(flat_image(colours, width=160)) == 7 <= AUTO_MAX_LAYERS

    def test_fully_transparent_image(self) -> None:
        assert auto_layer_count(np.zeros((16, 16, 4), np.uint8)) == AUTO_MIN_LAYERS


class TestImages:
    def test_input_becomes_rgba_pil(self) -> None:
        image = to_rgba_pil(flat_image([(1, 2, 3)]))
        assert image.mode == "RGBA"  # an RGB image crashes the layered pipeline's VAE
        assert image.size == (120, 40)

    @pytest.mark.parametrize("resolution", [640, 1024])
    @pytest.mark.parametrize("size", [(100, 60), (33, 77), (1, 1), (4000, 30)])
    def test_bucket_keeps_the_area_and_multiples_of_32(self, resolution, size) -> None:
        width, height = bucket_size(*size, resolution)
        assert width % 32 == 0 and height % 32 == 0
        if min(size) > 1 and max(size) / min(size) < 10:
            assert abs(width * height / resolution**2 - 1) < 0.15
            assert abs(width / height - size[0] / size[1]) / (size[0] / size[1]) < 0.2

    def test_resizing_back_leaves_no_dark_fringe(self) -> None:
        """A white disc on transparent black, shrunk from a bucket to the document size:
        straight-alpha resampling would mix the black into the edge; premultiplied does not."""
        from PIL import Image

        yy, xx = np.mgrid[:512, :768]
        disc = ((xx - 384) ** 2 + (yy - 256) ** 2 < 200**2).astype(np.uint8) * 255
        rgba = np.zeros((512, 768, 4), np.uint8)
        rgba[..., :3] = 255
        rgba[..., 3] = disc
        rgba[disc == 0, :3] = 0  # transparent pixels carry black
        small = pil_to_rgba(Image.fromarray(rgba, "RGBA"), (101, 67))
        assert small.shape == (67, 101, 4)
        edge = (small[..., 3] > 0) & (small[..., 3] < 255)
        assert edge.any()
        assert small[edge][:, :3].min() >= 250

    def test_enlarging_back_is_exact_in_size(self) -> None:
        from PIL import Image

        image = Image.fromarray(flat_image([(9, 9, 9)], 64, 32), "RGBA")
        assert pil_to_rgba(image, (1000, 3)).shape == (3, 1000, 4)

    @pytest.mark.parametrize("size, trained", [
        ((64, 64), (1328, 1328)), ((1024, 1024), (1328, 1328)), ((300, 200), (1584, 1056)),
        ((1920, 1080), (1664, 928)), ((8000, 2000), (1664, 928)), ((41, 70), (928, 1664)),
        ((1000, 1500), (1056, 1584)), ((800, 1000), (1140, 1472)),
    ])
    def test_generation_uses_the_nearest_trained_size(self, size, trained) -> None:
        """Small documents are generated at a trained size too (then resized), never at
        their own size far below what the model was trained on."""
        assert generation_size(*size) == trained
        assert trained in TRAINED_SIZES

    def test_layer_over_neutral_grey(self) -> None:
        layer = np.zeros((2, 2, 4), np.uint8)
        layer[0, 0] = (255, 0, 0, 255)
        grey = np.asarray(over_grey(layer))
        assert tuple(grey[0, 0]) == (255, 0, 0)
        assert tuple(grey[1, 1]) == (128, 128, 128)

    def test_mask_is_placed_in_layer_coordinates(self) -> None:
        layer = InputImage("layer", np.zeros((10, 10, 4), np.uint8), x=5, y=5)
        mask_pixels = np.zeros((20, 20, 4), np.uint8)
        mask_pixels[5:10, 5:10, 3] = 255  # the layer's top-left quarter, in document space
        selected = mask_in_layer(InputImage("mask", mask_pixels), layer)
        assert selected[:5, :5].min() == 1.0
        assert selected[5:, :].max() == 0.0 and selected[:, 5:].max() == 0.0


class TestRegeneratedLayer:
    def source(self) -> InputImage:
        pixels = np.zeros((4, 4, 4), np.uint8)
        pixels[..., 0] = 10
        pixels[1:3, 1:3, 3] = 255
        return InputImage("layer", pixels, x=2, y=3)

    def test_without_a_selection_the_new_shape_is_kept_whole(self) -> None:
        edited = np.full((4, 4, 4), 200, np.uint8)  # a bigger shape than the source's
        result = DiffusionEngine._within_selection(self.source(), edited, None)
        assert np.array_equal(result, edited)

    def test_a_selection_limits_colour_and_alpha(self) -> None:
        edited = np.full((4, 4, 4), 200, np.uint8)
        mask = np.zeros((4, 4, 4), np.uint8)
        mask[:2, :, 3] = 255
        result = DiffusionEngine._within_selection(self.source(), edited,
                                                   InputImage("mask", mask, 2, 3))
        assert (result[:2] == 200).all()
        assert np.array_equal(result[2:], self.source().pixels[2:])


class TestProgress:
    def test_fractions_increase_through_the_stages(self) -> None:
        events: list[dict] = []
        progress = StageProgress(JobContext(events.append), 0.5, 1.0, steps=3)
        progress.stage("caption")
        progress.stage("encode")
        for step in range(3):
            progress.on_step_end(None, step, 0, {})
        fractions = [event["fraction"] for event in events]
        assert fractions == sorted(fractions) and fractions[0] >= 0.5 and fractions[-1] < 1.0
        assert [e["stage"] for e in events] == ["caption", "encode"] + ["denoise"] * 3 + ["decode"]
        assert [e.get("step") for e in events if e["stage"] == "denoise"] == [1, 2, 3]

    def test_cancel_raises_at_the_step(self) -> None:
        ctx = JobContext()
        progress = StageProgress(ctx, 0.0, 1.0, steps=5)
        progress.on_step_end(None, 0, 0, {})
        ctx.cancel()
        with pytest.raises(JobCancelled):
            progress.on_step_end(None, 1, 0, {})


class TestOptions:
    def test_memory_options_are_checked(self) -> None:
        assert memory_options("cpu", "bfloat16", "model", True) == MemoryOptions(
            "cpu", "bfloat16", "model", True
        )
        with pytest.raises(EngineError) as bad_dtype:
            memory_options("cpu", "int4", "none", False)
        assert bad_dtype.value.code == "bad_params"
        with pytest.raises(EngineError):
            memory_options("cpu", "float32", "disk", False)

    def test_float16_is_refused_with_the_reason_and_the_fix(self) -> None:
        with pytest.raises(EngineError) as error:
            memory_options("cuda", "float16", "none", False)
        assert error.value.code == "bad_params"
        assert "bfloat16" in error.value.message and "NaN" in error.value.message

    def test_sequential_offload_is_served_by_group_offload(self) -> None:
        assert memory_options("cuda", "bfloat16", "sequential", False).offload == "group"

    def test_layer_count_and_resolution_are_checked_before_any_model_runs(self) -> None:
        def never() -> None:
            raise AssertionError("no pipeline may load for a bad request")

        engine = DiffusionEngine("test", never, never, never, MemoryOptions())
        image = flat_image([(1, 1, 1)])
        with pytest.raises(EngineError) as too_many:
            engine._layer_count(11, image)
        assert too_many.value.code == "bad_params"
        assert engine._layer_count("auto", image) == AUTO_MIN_LAYERS
        with pytest.raises(EngineError):
            engine._resolution(512, 640)
        assert engine._resolution(None, 640) == 640
