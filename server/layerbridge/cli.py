"""The ``layerbridge`` command: serve, decompose, models, doctor, install-gimp-plugin."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from layerbridge import __version__, protocol
from layerbridge.engines.registry import ENGINE_NAMES as ENGINES
from layerbridge.server import ServerConfig


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result = args.run(args)
        if isinstance(result, str):
            print(result, file=sys.stderr)
            return 1
        return int(result or 0)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerbridge",
        description="Layered image generation and decomposition for GIMP and Photoshop.",
    )
    parser.add_argument("--version", action="version", version=f"layerbridge {__version__}")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    add_serve(commands)
    add_decompose(commands)
    add_models(commands)
    add_doctor(commands)
    add_install_gimp(commands)
    return parser


# --- engines ---------------------------------------------------------------------------


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="classic",
        help="classic: weight-free, CPU (default); qwen: Qwen-Image-Layered on a GPU; "
        "tiny: the qwen code path with tiny random weights (tests)",
    )
    gpu = parser.add_argument_group("qwen engine")
    gpu.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a folder holding the models (default: the Hugging Face cache)",
    )
    gpu.add_argument(
        "--dtype",
        default=None,
        choices=("bfloat16", "float16", "float32"),
        help="weights' precision (default: bfloat16 on a GPU)",
    )
    gpu.add_argument(
        "--offload",
        default="none",
        choices=("none", "model", "sequential"),
        help="move weights to the CPU between uses, for smaller GPUs",
    )
    gpu.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles")
    gpu.add_argument(
        "--quantize",
        default=None,
        choices=("int8", "nf4"),
        help="quantise the transformer (needs torchao or bitsandbytes)",
    )
    gpu.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    gpu.add_argument("--model", default=None, help="layered model id (Qwen/Qwen-Image-Layered)")
    gpu.add_argument(
        "--generate-model",
        default=None,
        help="any diffusers text-to-image model id, for generate (Qwen/Qwen-Image)",
    )
    gpu.add_argument(
        "--edit-model",
        default=None,
        help="edit model id, for regenerate (Qwen/Qwen-Image-Edit-2509)",
    )


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.engine == "classic":
        return {}
    options = {
        "model_dir": args.model_dir,
        "dtype": args.dtype,
        "offload": args.offload,
        "vae_tiling": args.vae_tiling,
        "quantize": args.quantize,
        "device": args.device,
    }
    return {key: value for key, value in options.items() if value not in (None, False, "none")}


def load_engine(args: argparse.Namespace) -> Any:
    from layerbridge.engines.registry import create_engine
    from layerbridge.types import EngineError

    try:
        engine = create_engine(args.engine, **engine_options(args))
        started = time.perf_counter()
        engine.warm_up()
    except EngineError as exc:
        raise SystemExit(f"layerbridge: {exc.message}") from exc
    logging.getLogger("layerbridge").info(
        "%s engine ready in %.1f s", engine.name, time.perf_counter() - started
    )
    return engine


# --- serve -----------------------------------------------------------------------------


def add_serve(commands: Any) -> None:
    defaults = ServerConfig()
    serve = commands.add_parser("serve", help="run the websocket server for the plug-ins")
    serve.add_argument(
        "--host",
        default=defaults.host,
        help=f"address to bind (default {defaults.host}; any other needs --token)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=defaults.port,
        help=f"port (default {defaults.port}; 0 picks a free one)",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("LAYERBRIDGE_TOKEN"),
        help="shared secret clients send in hello (env LAYERBRIDGE_TOKEN)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser Origin allowed to connect (repeatable); none by default",
    )
    serve.add_argument("--max-pixels", type=int, default=defaults.limits.max_pixels)
    serve.add_argument("--max-layers", type=int, default=defaults.limits.max_layers)
    serve.add_argument("--max-queue", type=int, default=defaults.max_queue)
    serve.add_argument("--max-jobs-per-client", type=int, default=defaults.max_jobs_per_client)
    serve.add_argument(
        "--job-timeout", type=float, default=defaults.job_timeout_s, help="seconds per job"
    )
    serve.add_argument(
        "--result-ttl",
        type=float,
        default=defaults.result_ttl_s,
        help="seconds a finished job's results are kept for fetch",
    )
    serve.add_argument(
        "--output-dir",
        type=Path,
        default=Path.home() / "LayerBridge",
        help="where jobs with params.save write PSD/ORA files",
    )
    serve.add_argument("--certfile", help="TLS certificate (serve wss://)")
    serve.add_argument("--keyfile", help="TLS private key")
    add_hardening_options(serve, defaults)
    add_engine_options(serve)
    serve.set_defaults(run=run_serve)


def add_hardening_options(serve: argparse.ArgumentParser, defaults: ServerConfig) -> None:
    """Who may use the server, and how much of it: team tokens and resource limits."""
    limits = serve.add_argument_group("users and resource limits")
    limits.add_argument(
        "--tokens-file",
        type=Path,
        default=None,
        help="a team server's users: one 'USER TOKEN' per line; each user's jobs are theirs "
        "on any connection (see the README)",
    )
    limits.add_argument(
        "--max-jobs-per-address",
        type=int,
        default=defaults.max_jobs_per_address,
        help="queued jobs of all clients at one network address",
    )
    limits.add_argument(
        "--memory-budget",
        type=int,
        default=defaults.memory_budget >> 20,
        metavar="MIB",
        help="MiB of queued inputs, running and kept jobs, unread frames and uploads; new "
        f"work is refused past it (default {defaults.memory_budget >> 20})",
    )
    limits.add_argument("--max-connections", type=int, default=defaults.max_connections)
    limits.add_argument(
        "--max-connections-before-hello",
        type=int,
        default=defaults.max_connections_before_hello,
    )
    limits.add_argument(
        "--hello-timeout",
        type=float,
        default=defaults.hello_timeout_s,
        help="seconds a new connection has to say hello",
    )
    limits.add_argument(
        "--send-timeout",
        type=float,
        default=defaults.send_timeout_s,
        help="seconds a send may wait on a client that reads nothing before it is dropped",
    )


def run_serve(args: argparse.Namespace) -> int:
    from layerbridge.identity import read_tokens_file
    from layerbridge.server import run_server

    try:  # before loading the engine: a refused bind should not wait for a model
        users = read_tokens_file(args.tokens_file) if args.tokens_file else {}
        ServerConfig(host=args.host, token=args.token, tokens=users).check()
    except (OSError, ValueError) as exc:
        raise SystemExit(f"layerbridge: {exc}") from exc
    engine = load_engine(args)
    limits = protocol.Limits(
        max_pixels=args.max_pixels,
        min_layers=engine.min_layers,
        max_layers=min(args.max_layers, engine.max_layers),
    )
    config = ServerConfig(
        host=args.host,
        port=args.port,
        token=args.token,
        allowed_origins=args.allow_origin,
        limits=limits,
        max_queue=args.max_queue,
        max_jobs_per_client=args.max_jobs_per_client,
        result_ttl_s=args.result_ttl,
        job_timeout_s=args.job_timeout,
        output_dir=args.output_dir,
        certfile=args.certfile,
        keyfile=args.keyfile,
        tokens=users,
        max_jobs_per_address=args.max_jobs_per_address,
        memory_budget=args.memory_budget << 20,
        max_connections=args.max_connections,
        max_connections_before_hello=args.max_connections_before_hello,
        hello_timeout_s=args.hello_timeout,
        send_timeout_s=args.send_timeout,
    )

    def ready(url: str) -> None:
        print(f"LayerBridge {__version__} serving the {engine.name} engine on {url}", flush=True)

    asyncio.run(run_server(engine, config, ready))
    return 0


# --- decompose -------------------------------------------------------------------------


def add_decompose(commands: Any) -> None:
    decompose = commands.add_parser("decompose", help="split an image file into layers")
    decompose.add_argument("image", type=Path, help="any image Pillow reads (PNG, JPEG, ...)")
    decompose.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="OUT.psd, OUT.ora, or a folder for PNGs and manifest.json",
    )
    decompose.add_argument("--layers", default="auto", help='a number, or "auto" (default)')
    decompose.add_argument("--seed", type=int, default=None)
    add_engine_options(decompose)
    decompose.set_defaults(run=run_decompose)


def run_decompose(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from layerbridge.engines.base import JobContext, JobRequest
    from layerbridge.export import export_layers
    from layerbridge.image_files import ImageFileError, read_image
    from layerbridge.types import EngineError, InputImage

    try:
        pixels = read_image(args.image)
    except ImageFileError as exc:
        raise SystemExit(f"layerbridge: {exc}") from exc
    layers_param: int | str = args.layers if args.layers == "auto" else int(args.layers)
    engine = load_engine(args)
    params = protocol.validate_params(
        "decompose",
        {"layers": layers_param, "seed": args.seed},
        protocol.Limits(
            max_pixels=1 << 40, min_layers=engine.min_layers, max_layers=engine.max_layers
        ),
    )
    request = JobRequest(
        uuid.uuid4().hex, "decompose", params, {"image": InputImage("image", pixels)}
    )
    bar_format = "{desc:<10} {percentage:3.0f}%|{bar}|"
    with tqdm(total=100, desc="decompose", bar_format=bar_format) as bar:

        def show(event: dict[str, Any]) -> None:
            if "fraction" in event:
                bar.n = round(100 * event["fraction"])
                bar.set_description(event["stage"])
                bar.refresh()

        try:
            layers = list(engine.run(request, JobContext(show)))
        except EngineError as exc:
            raise SystemExit(f"layerbridge: {exc.message}") from exc
    height, width = pixels.shape[:2]
    out = export_layers(layers, (width, height), args.output)
    print(f"wrote {len(layers)} layers to {out}")
    return 0


# --- commands owned by other modules ---------------------------------------------------


def add_models(commands: Any) -> None:
    models = commands.add_parser("models", help="list the diffusion models found offline")
    models.add_argument("--model-dir", type=Path, default=None)
    models.set_defaults(run=lambda args: _call("layerbridge.weights", "list_models_command", args))


def add_doctor(commands: Any) -> None:
    doctor = commands.add_parser("doctor", help="check torch, the GPU, diffusers and the models")
    doctor.add_argument("--model-dir", type=Path, default=None)
    doctor.set_defaults(run=lambda args: _call("layerbridge.doctor", "run_doctor", args))


def add_install_gimp(commands: Any) -> None:
    install = commands.add_parser("install-gimp-plugin", help="install the GIMP 3 plug-in")
    try:
        from layerbridge import gimp_install
    except ImportError:  # a checkout without the plug-in
        install.set_defaults(run=lambda args: "layerbridge: the GIMP plug-in is not packaged")
        return
    gimp_install.add_arguments(install)
    install.set_defaults(run=gimp_install.install)


def _call(module: str, function: str, args: argparse.Namespace) -> int:
    import importlib

    return int(getattr(importlib.import_module(module), function)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
