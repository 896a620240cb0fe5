"""The classic engine's contract: ops, errors, progress, cancellation, warm-up."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import design

from layerbridge.engines.base import (
    EngineError,
    InputImage,
    JobCancelled,
    JobContext,
    JobRequest,
)
from layerbridge.engines.classic import ClassicEngine
from layerbridge.engines.registry import create_engine


def _request(op: str, layers: object = "auto") -> JobRequest:
    _, pixels = design(1, 160, 120)
    key = "layer" if op == "split" else "image"
    return JobRequest("j", op, {"layers": layers}, {key: InputImage(key, pixels)})


def test_is_created_by_name_and_describes_itself() -> None:
    engine = create_engine("classic")
    assert isinstance(engine, ClassicEngine)
    assert engine.name == "classic"
    assert set(engine.ops) == {"decompose", "split"}
    assert 1 <= engine.min_layers < engine.max_layers


@pytest.mark.parametrize("op", ["generate", "regenerate"])
def test_prompt_ops_say_what_to_install(op: str) -> None:
    request = JobRequest("j", op, {"prompt": "a cat"}, {})
    with pytest.raises(EngineError) as err:
        list(ClassicEngine().run(request, JobContext()))
    assert err.value.code == "unsupported_op"
    for words in ("classic", "weight-free", "--engine qwen", "layerbridge[diffusion]"):
        assert words in err.value.message


def test_bad_layer_count_is_a_params_error() -> None:
    with pytest.raises(EngineError) as err:
        list(ClassicEngine().run(_request("decompose", 99), JobContext()))
    assert err.value.code == "bad_params"


def test_missing_input_is_an_input_error() -> None:
    with pytest.raises(EngineError) as err:
        list(ClassicEngine().run(JobRequest("j", "decompose", {}, {}), JobContext()))
    assert err.value.code == "bad_input"


def test_progress_rises_through_named_stages() -> None:
    events: list[dict] = []
    layers = list(ClassicEngine().run(_request("decompose"), JobContext(events.append)))
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"regions", "background", "order", "peel"} <= {e["stage"] for e in events}
    assert layers[0].name == "background"
    assert all(layer.pixels.dtype == np.uint8 for layer in layers)


def test_cancel_stops_the_job() -> None:
    ctx = JobContext()
    ctx.cancel()
    with pytest.raises(JobCancelled):
        list(ClassicEngine().run(_request("decompose"), ctx))


def test_warm_up_runs() -> None:
    ClassicEngine().warm_up()
