"""``layerbridge doctor``: can this machine run the qwen engine, and if not, what to fix.

Each check prints one line (ok / warn / fail) and, where something is wrong, the fix. It loads
no model, so it answers in seconds even where a model load would take minutes or crash.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from layerbridge.engines.base import EngineError
from layerbridge.weights import (
    EDIT_MODEL,
    GENERATE_MODEL,
    GIB,
    LAYERED_MODEL,
    MODEL_ROLES,
    diffusers_version_problem,
    find_model,
    needed_gib,
    weights_size,
)


@dataclass
class Check:
    """One finding: ``level`` is ok, warn or fail; ``fix`` says what to do about it."""

    name: str
    level: str
    detail: str
    fix: str = ""


def check_torch() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch", "fail", "not installed",
                     "pip install torch (the CUDA build from pytorch.org for your driver)")
    import torch

    return Check("torch", "ok", torch.__version__)


def check_cuda() -> Check:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("GPU", "ok", f"CUDA {torch.version.cuda}: {names}")
    if torch.backends.mps.is_available():
        return Check("GPU", "warn", "Apple MPS (untested; expect minutes per job)")
    build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA device visible"
    return Check("GPU", "fail", build,
                 "the qwen engine needs an NVIDIA GPU: install the CUDA torch build and a driver "
                 "(nvidia-smi must list the card), or use --engine classic")


def check_diffusers() -> Check:
    problem = diffusers_version_problem()
    if problem:
        return Check("diffusers", "fail", problem.split(":")[0], problem)
    import diffusers

    return Check("diffusers", "ok", diffusers.__version__)


def check_vram(model_dir: Path | None) -> Check:
    """Free GPU memory against what each offload mode needs for the layered model found."""
    import torch

    if not torch.cuda.is_available():
        return Check("GPU memory", "warn", "no CUDA GPU to measure")
    free, total = torch.cuda.mem_get_info()
    try:
        folder = find_model(LAYERED_MODEL, model_dir)
    except EngineError:
        return Check("GPU memory", "warn", f"{free / GIB:.1f} of {total / GIB:.1f} GB free; "
                     "the model is missing, so the need is unknown")
    for offload in ("none", "model", "sequential"):
        need = needed_gib(folder, "bfloat16", offload, None)
        if free / GIB >= need:
            level = "ok" if offload == "none" else "warn"
            fix = "" if offload == "none" else f"start with --offload {offload} (slower)"
            return Check("GPU memory", level,
                         f"{free / GIB:.1f} GB free; about {need:.0f} GB needed with "
                         f"offload={offload}", fix)
    return Check("GPU memory", "fail", f"{free / GIB:.1f} GB free", "free the GPU (nvidia-smi)")


def check_models(model_dir: Path | None) -> list[Check]:
    """The layered model is required; the generate and regenerate models only for their ops."""
    checks = []
    for model_id in (LAYERED_MODEL, GENERATE_MODEL, EDIT_MODEL):
        try:
            folder = find_model(model_id, model_dir)
        except EngineError as exc:
            level = "fail" if model_id == LAYERED_MODEL else "warn"
            checks.append(Check(model_id, level, f"missing ({MODEL_ROLES[model_id]})",
                                exc.message))
            continue
        size = weights_size(folder) / GIB
        checks.append(Check(model_id, "ok", f"{size:.1f} GB in {folder}"))
    return checks


def run_checks(model_dir: Path | None) -> list[Check]:
    """Every check in order; later ones are skipped where an earlier one makes them moot."""
    torch_check = check_torch()
    if torch_check.level == "fail":
        return [torch_check]
    steps: list[Callable[[], Check | list[Check]]] = [
        check_cuda, check_diffusers, lambda: check_vram(model_dir), lambda: check_models(model_dir)
    ]
    checks = [torch_check]
    for step in steps:
        result = step()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def run_doctor(args: argparse.Namespace) -> int:
    """Print the checks; 0 when the qwen engine can run here, 1 otherwise."""
    checks = run_checks(getattr(args, "model_dir", None))
    for check in checks:
        print(f"[{check.level:>4}] {check.name}: {check.detail}")
        if check.fix:
            print(f"       fix: {check.fix}")
    failed = [check for check in checks if check.level == "fail"]
    print("ready for --engine qwen" if not failed else
          f"not ready for --engine qwen ({len(failed)} problem(s) above); "
          "--engine classic runs anywhere")
    return 1 if failed else 0
