"""``layerbridge doctor``: can this machine run each engine, and if not, what to fix.

Each engine gets its own checks, one line each (ok / warn / fail) with the fix where something
is wrong. The exit code answers for the engine asked for (``--engine``, default classic), so a
machine where classic works is "ready" even without a GPU; the other engines' problems are
shown as ``[ no ]``, information rather than failure. For the qwen engine it prints the memory
plan for this machine, or with ``--vram-gib N --ram-gib M`` for any machine, so a user can ask
before buying a card or downloading 60 GB. It loads no model: it answers in seconds.
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
    weights_size,
)

ENGINES = ("classic", "qwen", "tiny")
#: What the classic engine imports (pyproject's core dependencies it runs on).
CLASSIC_MODULES = ("numpy", "cv2", "scipy", "pymatting", "PIL")


@dataclass
class Check:
    """One finding: ``level`` is ok, warn or fail; ``fix`` says what to do about it."""

    name: str
    level: str
    detail: str
    fix: str = ""


def check_modules(modules: tuple[str, ...], fix: str) -> Check:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        return Check("packages", "fail", f"missing: {', '.join(missing)}", fix)
    return Check("packages", "ok", ", ".join(modules))


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
                 "(nvidia-smi must list the card)")


def check_diffusers() -> Check:
    problem = diffusers_version_problem()
    if problem:
        return Check("diffusers", "fail", problem.split(":")[0], problem)
    import diffusers

    return Check("diffusers", "ok", diffusers.__version__)


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


def check_plan(args: argparse.Namespace) -> Check:
    """The memory plan for the ops asked, on the memory given or this machine's."""
    from layerbridge.engines.diffusion.planner import (
        OP_PIPELINES,
        gpu_free_gib,
        host_ram_gib,
        plan_for,
    )

    vram = args.vram_gib if args.vram_gib is not None else gpu_free_gib("cuda")
    ram = args.ram_gib if args.ram_gib is not None else host_ram_gib()
    if vram is None:
        return Check("memory plan", "warn", "no CUDA GPU to plan for",
                     "ask for any card: layerbridge doctor --vram-gib 24 --ram-gib 64")
    ops = tuple(op.strip() for op in args.ops.split(",") if op.strip())
    unknown = sorted(set(ops) - set(OP_PIPELINES))
    if unknown or not ops:
        return Check("memory plan", "fail", f"unknown ops {unknown}",
                     f"--ops takes a comma-separated list of {', '.join(OP_PIPELINES)}")
    plan = plan_for(vram, ram, ops=ops, resolution=args.resolution, quantize=args.quantize)
    name = f"memory plan ({', '.join(ops)} at {args.resolution})"
    if plan.fits:
        return Check(name, "ok", plan.describe(), f"layerbridge serve --engine qwen {plan.flags}")
    return Check(name, "fail", "nothing fits: the smallest plan " + plan.describe(),
                 "a bigger GPU or more RAM, fewer ops (--ops decompose), or --engine classic")


def classic_checks(args: argparse.Namespace) -> list[Check]:
    return [check_modules(CLASSIC_MODULES, "pip install -e . (the core dependencies)")]


def tiny_checks(args: argparse.Namespace) -> list[Check]:
    torch_check = check_torch()
    if torch_check.level == "fail":
        return [torch_check]
    return [torch_check, check_diffusers(),
            check_modules(("transformers", "accelerate"), "pip install -e '.[diffusion]'")]


def qwen_checks(args: argparse.Namespace) -> list[Check]:
    torch_check = check_torch()
    if torch_check.level == "fail":
        return [torch_check]
    steps: list[Callable[[], Check | list[Check]]] = [check_diffusers, lambda: check_plan(args)]
    if args.vram_gib is None:  # this machine, not a card asked about
        steps = [check_cuda, *steps, lambda: check_models(args.model_dir)]
    checks = [torch_check]
    for step in steps:
        result = step()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


CHECKS: dict[str, Callable[[argparse.Namespace], list[Check]]] = {
    "classic": classic_checks, "qwen": qwen_checks, "tiny": tiny_checks}


def print_checks(engine: str, checks: list[Check], asked: bool) -> None:
    print(f"{engine} engine:")
    for check in checks:
        level = check.level if asked or check.level != "fail" else " no"
        print(f"  [{level:>4}] {check.name}: {check.detail}")
        if check.fix:
            print(f"         {'fix' if check.level != 'ok' else 'run'}: {check.fix}")


def run_doctor(args: argparse.Namespace) -> int:
    """Print every engine's checks; 0 when the engine asked for can run here, 1 otherwise."""
    args = with_defaults(args)
    asked = args.engine
    results = {engine: CHECKS[engine](args) for engine in ENGINES}
    for engine in ENGINES:
        print_checks(engine, results[engine], engine == asked)
    failed = [check for check in results[asked] if check.level == "fail"]
    others = [engine for engine in ENGINES if engine != asked
              and not any(check.level == "fail" for check in results[engine])]
    if failed:
        print(f"not ready for --engine {asked} ({len(failed)} problem(s) above)"
              + (f"; ready: --engine {', '.join(others)}" if others else ""))
        return 1
    print(f"ready for --engine {asked}")
    return 0


def with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The options a caller may leave out (tests call run_doctor with few)."""
    defaults = {"engine": "classic", "model_dir": None, "vram_gib": None, "ram_gib": None,
                "ops": "decompose", "resolution": 640, "quantize": None}
    return argparse.Namespace(**{**defaults, **vars(args)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``layerbridge doctor``'s options."""
    parser.add_argument("--engine", choices=ENGINES, default="classic",
                        help="the engine whose readiness sets the exit code (default classic)")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--vram-gib", type=float, default=None,
                        help="plan for a GPU with this much free memory instead of this one's")
    parser.add_argument("--ram-gib", type=float, default=None,
                        help="plan for this much free host memory instead of this machine's")
    parser.add_argument("--ops", default="decompose",
                        help="ops to plan for, comma-separated (decompose,generate,regenerate)")
    parser.add_argument("--resolution", type=int, choices=(640, 1024), default=640)
    parser.add_argument("--quantize", choices=("fp8", "int8", "nf4"), default=None,
                        help="pin the transformer's precision in the plan")
