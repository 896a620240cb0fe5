"""`layerbridge doctor` as a user runs it: per engine, the exit code for the engine asked for,
and the memory plan for any card."""

from __future__ import annotations

import subprocess
import sys

import pytest

LAYERBRIDGE = [sys.executable, "-m", "layerbridge.cli"]


def doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERBRIDGE, "doctor", *args], capture_output=True, text=True,
                          timeout=300)


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_ready_for_classic_without_a_gpu(tmp_path) -> None:
    """On a machine where classic works, doctor exits 0 and shows no [fail] line: the qwen
    engine's missing GPU and model are information, not a failure."""
    run = doctor("--model-dir", str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[fail]" not in run.stdout
    assert "classic engine:" in run.stdout and "qwen engine:" in run.stdout
    assert "ready for --engine classic" in run.stdout
    assert "Traceback" not in run.stderr


def test_tiny_is_ready_where_its_packages_are() -> None:
    run = doctor("--engine", "tiny")
    assert run.returncode == 0, run.stdout
    assert "ready for --engine tiny" in run.stdout


def test_qwen_without_gpu_or_model_is_not_ready(tmp_path) -> None:
    if has_cuda():
        pytest.skip("a CUDA GPU is present")
    run = doctor("--engine", "qwen", "--model-dir", str(tmp_path))
    assert run.returncode == 1
    assert "[fail] GPU" in run.stdout and "Qwen/Qwen-Image-Layered" in run.stdout


def test_the_plan_for_a_24_gb_card() -> None:
    run = doctor("--engine", "qwen", "--vram-gib", "24", "--ram-gib", "64")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "memory plan" in run.stdout and "--offload model --quantize int8" in run.stdout


def test_the_plan_for_a_card_too_small_for_everything() -> None:
    run = doctor("--engine", "qwen", "--vram-gib", "1", "--ram-gib", "4")
    assert run.returncode == 1
    assert "nothing fits" in run.stdout


def test_an_unknown_op_is_named() -> None:
    run = doctor("--engine", "qwen", "--vram-gib", "24", "--ram-gib", "64", "--ops", "paint")
    assert run.returncode == 1 and "paint" in run.stdout and "Traceback" not in run.stderr
