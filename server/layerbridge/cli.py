"""The ``layerbridge`` command: serve, decompose, models, doctor, install-gimp-plugin."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from layerbridge import __version__, protocol
from layerbridge.engines.registry import ENGINE_NAMES as ENGINES
from layerbridge.server import ServerConfig

if TYPE_CHECKING:
    from layerbridge.cluster.pool import WorkerPool
    from layerbridge.engines.base import Engine


class UsageError(Exception):
    """A command line that cannot work: shown as one line, exit status 2."""


class Failure(Exception):
    """A run that failed for a reason the user can fix: shown as one line, exit status 1."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where the help is, no usage dump."""

    def error(self, message: str) -> NoReturn:
        fail_usage(self.prog, message)


def fail_usage(prog: str, message: str) -> NoReturn:
    print(f"{prog}: {message} (see {prog} --help)", file=sys.stderr)
    raise SystemExit(2)


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
    except UsageError as exc:
        fail_usage(getattr(args, "prog", parser.prog), str(exc))
    except Failure as exc:
        print(f"layerbridge: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line here, the traceback at --log-level debug
        logging.getLogger("layerbridge").debug("unexpected error", exc_info=True)
        print(
            f"layerbridge: unexpected error: {exc!r} (run with --log-level debug for details, "
            "and please report it)",
            file=sys.stderr,
        )
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="layerbridge",
        description="Layered image generation and decomposition for GIMP and Photoshop.",
    )
    parser.add_argument("--version", action="version", version=f"layerbridge {__version__}")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=Parser)
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
        choices=("bfloat16", "float32"),
        help="weights' precision (default: bfloat16 on a GPU, float32 on a CPU; float16 "
        "overflows in the Qwen models)",
    )
    gpu.add_argument(
        "--offload",
        default="auto",
        choices=("auto", "none", "model", "group", "sequential"),
        help="where weights wait between uses: auto (the memory plan for this GPU, see "
        "`layerbridge doctor`), none, model, group (any card, slowest); sequential means group",
    )
    gpu.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles")
    gpu.add_argument(
        "--quantize",
        default=None,
        choices=("fp8", "int8", "nf4"),
        help="quantise the transformer (fp8, int8: torchao; nf4, with the text encoder: "
        "bitsandbytes)",
    )
    gpu.add_argument(
        "--cache",
        default="none",
        choices=("none", "fbcache", "dbcache"),
        help="reuse transformer steps that change little (cache-dit): fbcache or dbcache",
    )
    gpu.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the transformer's repeated block (slow first job)",
    )
    gpu.add_argument("--gpus", type=int, default=1, help="GPUs for one job (1 for now)")
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
        "cache": args.cache,
        "compile": args.compile,
    }
    if args.gpus != 1:
        options["gpus"] = args.gpus
    if args.engine == "tiny" and args.offload == "auto":
        options["offload"] = None  # nothing to plan for random weights on a CPU
    return {key: value for key, value in options.items() if value not in (None, False)}


def create_engine(args: argparse.Namespace) -> Any:
    """The engine the options name, not loaded yet: its limits are known, its weights not read."""
    from layerbridge.engines.registry import create_engine
    from layerbridge.types import EngineError

    try:
        return create_engine(args.engine, **engine_options(args))
    except EngineError as exc:
        raise SystemExit(f"layerbridge: {exc.message}") from exc


def warm_up(engine: Any, announce: bool = True) -> Any:
    """Load the engine's weights. ``announce``: say so at info level (a server's log wants
    it; a decompose's standard error holds only progress and errors)."""
    from layerbridge.types import EngineError

    started = time.perf_counter()
    try:
        engine.warm_up()
    except EngineError as exc:
        raise SystemExit(f"layerbridge: {exc.message}") from exc
    logging.getLogger("layerbridge").log(
        logging.INFO if announce else logging.DEBUG,
        "%s engine ready in %.1f s",
        engine.name,
        time.perf_counter() - started,
    )
    return engine


def load_engine(args: argparse.Namespace) -> Any:
    return warm_up(create_engine(args))


def limits_for(engine: Any, max_pixels: int, max_layers: int) -> protocol.Limits:
    """What a server running ``engine`` accepts, and so what ``decompose`` accepts: the one
    place the command line's limits come from (``serve`` announces them in welcome)."""
    return protocol.Limits(
        max_pixels=max_pixels,
        min_layers=engine.min_layers,
        max_layers=min(max_layers, engine.max_layers),
    )


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
    add_worker_options(serve)
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
        help="MiB the server may hold for its clients: queued inputs, the layers jobs will "
        "make, the engine's working memory for running jobs, kept results, unread frames and "
        f"uploads; new work is refused past it (default {defaults.memory_budget >> 20})",
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


def add_worker_options(serve: argparse.ArgumentParser) -> None:
    pool = serve.add_argument_group("a pool of workers on Ray Serve (docs/cluster.md)")
    pool.add_argument(
        "--workers",
        choices=("local", "ray"),
        default="local",
        help="local: the engine runs in this process (default); ray: one engine per replica",
    )
    pool.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="join this Ray cluster (default: start one of this machine alone, on 127.0.0.1)",
    )
    pool.add_argument("--replicas", type=int, default=1, help="workers, one job each at a time")
    pool.add_argument(
        "--gpus-per-replica",
        type=float,
        default=None,
        help="GPUs each replica holds (default: 1 for qwen, 0 for classic and tiny)",
    )


def start_engine(args: argparse.Namespace) -> tuple[Engine, WorkerPool | None]:
    """The engine to serve and, with ``--workers ray``, the pool running it (else None)."""
    if args.workers == "local":
        if args.ray_address is not None or args.replicas != 1 or args.gpus_per_replica:
            raise UsageError("--ray-address, --replicas and --gpus-per-replica need --workers ray")
        return load_engine(args), None
    try:
        from layerbridge.cluster.pool import PoolConfig, WorkerPool
    except ImportError as exc:
        hint = 'pip install "layerbridge[cluster]"'
        raise Failure(f"--workers ray needs Ray ({exc}): {hint}") from exc
    gpus = args.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if args.engine == "qwen" else 0.0
    try:
        pool = WorkerPool(PoolConfig(args.engine, engine_options(args), args.replicas, gpus,
                                     address=args.ray_address))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return pool.start(), pool


def run_serve(args: argparse.Namespace) -> int:
    from layerbridge.identity import read_tokens_file
    from layerbridge.server import run_server

    try:  # before loading the engine: a refused bind should not wait for a model
        users = read_tokens_file(args.tokens_file) if args.tokens_file else {}
        ServerConfig(host=args.host, token=args.token, tokens=users).check()
    except (OSError, ValueError) as exc:
        raise SystemExit(f"layerbridge: {exc}") from exc
    engine, pool = start_engine(args)
    limits = limits_for(engine, args.max_pixels, args.max_layers)
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
        on = f" on {pool.config.replicas} Ray workers" if pool is not None else ""
        print(f"LayerBridge {__version__} serving the {engine.name} engine{on} on {url}",
              flush=True)

    try:
        asyncio.run(run_server(engine, config, ready))
    except OSError as exc:
        raise Failure(bind_failure(args.host, args.port, exc)) from exc
    finally:
        if pool is not None:
            pool.stop()
    return 0


def bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve on {host}:{port}: the port is in use (is a LayerBridge server "
            "already running there?); stop that program or pick another --port"
        )
    return f"cannot serve on {host}:{port}: {exc.strerror or exc}"


# --- decompose -------------------------------------------------------------------------

OUTPUT_FORMATS = ("psd", "ora", "png")


def add_decompose(commands: Any) -> None:
    decompose = commands.add_parser(
        "decompose",
        help="split image files into layers",
        description="Split images into layered PSD, ORA or PNG files. Progress goes to "
        "standard error (a bar on a terminal, one line per stage in a log); results to "
        "standard output.",
    )
    decompose.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files Pillow reads (PNG, JPEG, ...), or folders of them",
    )
    decompose.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="OUT.psd or OUT.ora for one image; a folder for PNGs and manifest.json, or, "
        "for several images or with --format, the folder that gets one result per image",
    )
    decompose.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default=None,
        help="the format of each result when -o is a folder of results (default psd)",
    )
    decompose.add_argument(
        "--layers", type=layer_count, default="auto", help='a number, or "auto" (default)'
    )
    decompose.add_argument(
        "--seed", type=seed_value, default=None, help="repeat a result (default: a new seed)"
    )
    decompose.add_argument(
        "--max-pixels",
        type=positive_int,
        default=protocol.Limits().max_pixels,
        help="refuse larger images, as the server does (default %(default)s)",
    )
    decompose.add_argument("--force", action="store_true", help="overwrite existing results")
    decompose.add_argument(
        "--json", action="store_true", help="one JSON object per image on standard output"
    )
    decompose.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="bar on a terminal, lines in a log (auto, the default), or none",
    )
    add_engine_options(decompose)
    decompose.set_defaults(run=run_decompose, prog=decompose.prog)


def layer_count(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number or "auto"') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'{value} is too few: ask for 1 or more, or "auto"')
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is not from 0 to 2**63-1")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


@dataclass(frozen=True)
class Task:
    """One image in, one result out."""

    image: Path
    output: Path


def plan_tasks(args: argparse.Namespace) -> list[Task]:
    """Which image goes to which result; every problem found before any work is done."""
    images = expand_images(args.images)
    out: Path = args.output
    suffix = out.suffix.lower().lstrip(".")
    if suffix and suffix not in ("psd", "ora"):
        raise UsageError(f"-o {out}: cannot write .{suffix}; name a .psd or .ora file, or a folder")
    if suffix:
        if len(images) > 1:
            raise UsageError(
                f"-o {out} names one file for {len(images)} images; name a folder instead"
            )
        if args.format and args.format != suffix:
            raise UsageError(f"-o {out} is a .{suffix} file but --format says {args.format}")
        tasks = [Task(images[0], out)]
    elif len(images) == 1 and args.format is None:
        tasks = [Task(images[0], out)]  # a folder of PNGs and manifest.json
    else:
        tasks = [Task(image, result_path(out, image, args.format or "psd")) for image in images]
        check_unique(tasks)
    if not args.force:
        existing = [str(task.output) for task in tasks if result_exists(task.output)]
        if existing:
            raise UsageError(
                f"{', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''} already "
                f"exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite"
            )
    return tasks


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders as their image files (by extension, sorted, not recursive)."""
    from PIL import Image

    readable = set(Image.registered_extensions())
    images: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in readable and not p.name.startswith(".")
            )
            if not found:
                raise UsageError(f"{path} holds no image files")
            images.extend(found)
        elif path.exists():
            images.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return images


def result_path(folder: Path, image: Path, fmt: str) -> Path:
    return folder / image.stem if fmt == "png" else folder / f"{image.stem}.{fmt}"


def check_unique(tasks: list[Task]) -> None:
    seen: dict[Path, Path] = {}
    for task in tasks:
        if task.output in seen:
            raise UsageError(
                f"{seen[task.output]} and {task.image} would both be written to "
                f"{task.output}; decompose them into different folders"
            )
        seen[task.output] = task.image


def result_exists(path: Path) -> bool:
    """A result file, or a PNG folder that holds one (an empty folder may be reused)."""
    return path.is_file() or (path / "manifest.json").exists()


def run_decompose(args: argparse.Namespace) -> int:
    tasks = plan_tasks(args)
    engine = create_engine(args)
    limits = limits_for(engine, args.max_pixels, protocol.Limits().max_layers)
    if isinstance(args.layers, int) and not limits.min_layers <= args.layers <= limits.max_layers:
        raise UsageError(
            f"--layers {args.layers}: the {engine.name} engine makes {limits.min_layers} to "
            f'{limits.max_layers} layers, or "auto"'
        )
    warm_up(engine, announce=False)
    failed = 0
    for number, task in enumerate(tasks, 1):
        label = task.image.name if len(tasks) == 1 else f"[{number}/{len(tasks)}] {task.image.name}"
        try:
            report = decompose_one(engine, task, args, limits, progress_for(args.progress, label))
        except Failure as exc:
            failed += 1
            report = {"image": str(task.image), "error": str(exc)}
            print(f"layerbridge: {task.image}: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps(report), flush=True)
        elif "error" not in report:
            print(
                f"wrote {len(report['layers'])} layers to {report['output']} "
                f"(seed {report['seed']}, {report['seconds']} s)",
                flush=True,
            )
    return 1 if failed else 0


def decompose_one(
    engine: Any,
    task: Task,
    args: argparse.Namespace,
    limits: protocol.Limits,
    progress: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Decompose one image into its result; a report of what was written."""
    from layerbridge.engines.base import JobContext, JobRequest
    from layerbridge.export import export_layers
    from layerbridge.types import EngineError, InputImage

    pixels = read_image(task.image, limits)
    height, width = pixels.shape[:2]
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    params = protocol.validate_params("decompose", {"layers": args.layers, "seed": seed}, limits)
    request = JobRequest(
        uuid.uuid4().hex, "decompose", params, {"image": InputImage("image", pixels)}
    )
    started = time.perf_counter()
    try:
        layers = list(engine.run(request, JobContext(progress)))
    except EngineError as exc:
        raise Failure(exc.message) from exc
    finally:
        progress({"end": True})
    out = export_layers(layers, (width, height), task.output)
    return {
        "image": str(task.image),
        "output": str(out),
        "width": width,
        "height": height,
        "engine": engine.name,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
        "layers": [
            {
                "name": layer.name,
                "x": int(layer.x),
                "y": int(layer.y),
                "width": int(layer.pixels.shape[1]),
                "height": int(layer.pixels.shape[0]),
            }
            for layer in visible_layers(layers)
        ],
    }


def read_image(path: Path, limits: protocol.Limits) -> Any:
    """The image upright and in full tonal range (see :mod:`layerbridge.image_files`), refused
    in one line past ``--max-pixels`` before any pixel is decoded."""
    from layerbridge.image_files import ImageFileError
    from layerbridge.image_files import read_image as read_file

    try:
        return read_file(path, limits.max_pixels)
    except ImageFileError as exc:
        raise Failure(str(exc)) from exc


def visible_layers(layers: list[Any]) -> list[Any]:
    from layerbridge.export import visible_layers as trimmed

    return trimmed(layers)


def progress_for(mode: str, label: str) -> Callable[[dict[str, Any]], None]:
    """Progress on standard error: a bar redrawn in place on a terminal; in a log (not a
    terminal), one line when the stage changes or another tenth is done, never a redraw."""
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    if mode == "none":
        return lambda event: None
    if mode == "bar":
        return bar_progress(label)
    return line_progress(label)


def bar_progress(label: str) -> Callable[[dict[str, Any]], None]:
    from tqdm import tqdm

    bar = tqdm(total=100, desc=label, bar_format="{desc} {percentage:3.0f}%|{bar}|", leave=True)

    def show(event: dict[str, Any]) -> None:
        if event.get("end"):
            bar.close()
        elif "fraction" in event:
            bar.n = round(100 * event["fraction"])
            bar.set_description(f"{label}: {stage_name(event['stage'])}")
            bar.refresh()

    return show


def line_progress(label: str) -> Callable[[dict[str, Any]], None]:
    last = {"stage": "", "tenth": -1}

    def show(event: dict[str, Any]) -> None:
        if "fraction" not in event:
            return
        tenth = int(event["fraction"] * 10)
        if event["stage"] == last["stage"] and tenth == last["tenth"]:
            return
        last.update(stage=event["stage"], tenth=tenth)
        percent = round(100 * event["fraction"])
        print(f"{label}: {stage_name(event['stage'])} {percent}%", file=sys.stderr, flush=True)

    return show


def stage_name(stage: str) -> str:
    """A stage as a person reads it ("peel" is "separating layers")."""
    from layerbridge.stages import stage_text

    return stage_text(stage).lower()


# --- commands owned by other modules ---------------------------------------------------


def add_models(commands: Any) -> None:
    models = commands.add_parser("models", help="list the diffusion models found offline")
    models.add_argument("--model-dir", type=Path, default=None)
    models.set_defaults(run=lambda args: _call("layerbridge.weights", "list_models_command", args))


def add_doctor(commands: Any) -> None:
    from layerbridge.doctor import add_arguments

    doctor = commands.add_parser(
        "doctor", help="which engines can run here; the GPU memory plan for any card"
    )
    add_arguments(doctor)
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
