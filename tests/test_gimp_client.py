"""The GIMP plug-in's host-free core against a real LayerBridge server.

A fake host records what the plug-in's GIMP adapter would be asked to do (insert a layer,
show progress); the real GIMP runs in ``tests/gimp/run.sh``. The core is loaded from the
plug-in's folder by path; ``import layerbridge`` there finds the installed package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from layerbridge import protocol
from layerbridge.client import Client
from layerbridge.engines.base import Engine, Layer
from layerbridge.gimp_install import install_into
from tests.helpers import PLUGIN_DIR
from tests.synthetic import two_box_design as design

SEED = 5


def load_core(path: Path = PLUGIN_DIR / "plugin_core.py", name: str = "plugin_core"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


core = load_core()


class FakeHost:
    """Records the calls GIMP's adapter gets; cancels after ``cancel_after`` messages."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.layers: list[dict] = []
        self.progress: list[tuple[float | None, str]] = []
        self.previews: list[tuple[int, dict]] = []  # (layers inserted before it, message)
        self.cancel_after = cancel_after

    def show_progress(self, fraction, text) -> None:
        self.progress.append((fraction, text))

    def cancel_requested(self) -> bool:
        return self.cancel_after is not None and len(self.progress) > self.cancel_after

    def add_layer(self, layer: dict) -> None:
        self.layers.append(layer)

    def show_preview(self, preview: dict) -> None:
        self.previews.append((len(self.layers), preview))


def direct(url: str, op: str, params: dict, inputs: list) -> list[dict]:
    """The same job through the product's client, for comparison."""
    with Client(url, "reference") as client:
        return client.run(op, params, inputs, timeout=120).layers


def run(url: str, request, host=None, **kwargs):
    host = host or FakeHost()
    client = core.connect(url)
    try:
        return core.run_job(client, request, host, **kwargs), host
    finally:
        client.close()


# --- every op on the classic engine -----------------------------------------------------


def test_decompose_inserts_the_servers_layers_bottom_first(classic_server) -> None:
    request = core.decompose_request(design(), 120, 90, layers=0, seed=SEED)
    outcome, host = run(classic_server.url, request)
    expected = direct(classic_server.url, "decompose", request.params, request.inputs)
    assert outcome.done is not None and not outcome.cancelled
    assert [layer["index"] for layer in host.layers] == list(range(len(expected)))
    for got, want in zip(host.layers, expected, strict=True):
        for key in ("name", "x", "y", "width", "height", "sha256", "data"):
            assert got[key] == want[key]
    assert request.title == f"Decomposed [seed {SEED}]"  # the seed that repeats it
    assert [layer["sha256"] for layer in outcome.layers] == [w["sha256"] for w in expected]
    assert "data" not in outcome.layers[0]  # the record kept in the image holds no pixels


def test_split_keeps_the_layers_place(classic_server) -> None:
    pixels = np.frombuffer(design(), np.uint8).reshape(90, 120, 4)[40:90, 50:120]
    bounds = (50, 40, 70, 50)
    request = core.split_request(pixels.tobytes(), bounds, layers=0, seed=SEED, name="Shapes")
    outcome, host = run(classic_server.url, request)
    assert request.title == f"Shapes (split) [seed {SEED}]"
    assert request.inputs[0][0] == protocol.InputSpec("layer", 70, 50, 50, 40)
    assert outcome.done is not None and host.layers
    expected = direct(classic_server.url, "split", request.params, request.inputs)
    assert [x["sha256"] for x in host.layers] == [x["sha256"] for x in expected]
    for layer in host.layers:  # inside the split layer's bounds, in document coordinates
        assert layer["x"] >= 50 and layer["y"] >= 40
        assert layer["x"] + layer["width"] <= 120 and layer["y"] + layer["height"] <= 90


@pytest.mark.parametrize("op", ["generate", "regenerate"])
def test_prompt_ops_on_classic_fail_with_the_engines_message(classic_server, op) -> None:
    if op == "generate":
        request = core.generate_request("a red kite", 128, 96, layers=3, seed=SEED)
    else:
        request = core.regenerate_request("a red kite", SEED, design(), (0, 0, 120, 90))
    host = FakeHost()
    with pytest.raises(core.JobFailed) as failed:
        run(classic_server.url, request, host)
    assert failed.value.code == protocol.UNSUPPORTED_OP
    text = str(failed.value)
    assert text.startswith("The LayerBridge server's engine cannot do this")
    assert "classic" in text and "--engine" in text  # what to install, from the server
    assert host.layers == []


# --- every op on the tiny engine, where it exists -------------------------------------------


@pytest.fixture(scope="module")
def tiny_engine() -> Engine:
    from layerbridge.engines.registry import create_engine

    try:
        engine = create_engine("tiny")
    except (ImportError, ValueError) as exc:  # the engine is not in this checkout yet
        pytest.skip(f"the tiny engine is not available: {exc}")
    engine.warm_up()
    return engine


def test_every_op_on_tiny(serve, tiny_engine, tmp_path) -> None:
    """The tiny engine runs the real pipelines: one step at its smallest resolution keeps
    this test to seconds per op on a CPU."""
    url = serve(tiny_engine, output_dir=tmp_path).url
    image = design(64, 64)
    fast = {"steps": 1, "resolution": min(tiny_engine.resolutions)}
    selection = bytes([0]) * (16 * 64) + bytes([255]) * (48 * 64)
    requests = {
        "generate": core.generate_request("a red kite", 64, 64, layers=2, seed=SEED, **fast),
        "decompose": core.decompose_request(image, 64, 64, layers=2, seed=SEED, **fast),
        "split": core.split_request(image, (4, 2, 64, 64), 2, SEED, name="L", **fast),
        "regenerate": core.regenerate_request(
            "a blue kite",
            SEED,
            image,
            (0, 0, 64, 64),
            document=(image, 64, 64),
            mask=core.mask_from_selection(selection),
            **fast,
        ),
    }
    for op, request in requests.items():
        outcome, host = run(url, request)
        assert outcome.done is not None, op
        assert host.layers, op
        assert [layer["index"] for layer in host.layers] == list(range(len(host.layers)))
        if op == "regenerate":
            assert len(host.layers) == 1
        if op == "regenerate":  # with its mask and document: the same seed, the same bytes
            expected = direct(url, op, request.params, request.inputs)
            assert [x["sha256"] for x in host.layers] == [x["sha256"] for x in expected], op


# --- progress and cancel -------------------------------------------------------------------


class SlowEngine(Engine):
    """Reports a step every 20 ms for four seconds; stops at the first cancel check."""

    name = "slow"
    ops = ("decompose", "split")

    def run(self, request, ctx) -> Iterator[Layer]:
        steps = 200
        for step in range(steps):
            ctx.check_cancelled()
            ctx.progress(step / steps, "denoise", step, steps)
            time.sleep(0.02)
        yield Layer("all", request.inputs["image"].pixels)


def test_progress_reaches_the_host(classic_server) -> None:
    outcome, host = run(classic_server.url, core.decompose_request(design(), 120, 90, 0, SEED))
    texts = [text for _, text in host.progress]
    assert texts[0] == "LayerBridge: sending the job"
    assert any(text.startswith("LayerBridge: received layer 1 of") for text in texts)
    assert texts[-1].endswith("layer(s) inserted") and host.progress[-1][0] == 1.0
    fractions = [f for f, _ in host.progress if f is not None]
    assert all(0.0 <= f <= 1.0 for f in fractions)


def test_progress_text_names_the_stage_and_step() -> None:
    message = {"type": "progress", "fraction": 0.25, "stage": "denoise", "step": 5, "steps": 20}
    assert core.progress_text(message) == (0.25, "LayerBridge: Generating (step 5 of 20)")
    assert core.progress_text({"type": "progress", "fraction": 0.5, "stage": "peel"})[1] == (
        "LayerBridge: Separating layers"
    )
    assert core.progress_text({"type": "progress", "fraction": 0.1, "stage": "new"})[1] == (
        "LayerBridge: New"
    )
    assert "2 job(s) ahead" in core.progress_text({"type": "queued", "position": 2})[1]


def test_cancel_from_the_host_stops_the_job(serve, tmp_path) -> None:
    url = serve(SlowEngine(), output_dir=tmp_path).url
    started = time.monotonic()
    outcome, host = run(
        url, core.decompose_request(design(), 120, 90, 0, SEED), FakeHost(cancel_after=3)
    )
    assert outcome.cancelled and outcome.done is None and host.layers == []
    assert time.monotonic() - started < 3.5  # well before the engine's four seconds
    assert "LayerBridge: cancelling" in [text for _, text in host.progress]


WATCHED_JOB = """
import sys, time, importlib.util
spec = importlib.util.spec_from_file_location("plugin_core", sys.argv[1])
core = importlib.util.module_from_spec(spec); sys.modules["plugin_core"] = core
spec.loader.exec_module(core)
client = core.connect(sys.argv[2])
watcher = core.CancelWatcher.start(sys.argv[2], None, job=sys.argv[3], secret=client.secret)
request = core.decompose_request(bytes(4 * 16 * 16), 16, 16, 0, 1)
client.submit(request.op, request.params, request.inputs, job=watcher.job)
print("submitted", client.secret, flush=True)
time.sleep(60)
"""


def test_a_killed_plugin_gets_its_job_cancelled(serve, tmp_path) -> None:
    """GIMP's progress cancel kills the plug-in: its watcher process cancels the job."""
    url = serve(SlowEngine(), output_dir=tmp_path / "out").url
    installed = install_into(tmp_path / "plug-ins")  # the layout GIMP runs
    job = "watched-job-1"
    plugin = subprocess.Popen(
        [sys.executable, "-c", WATCHED_JOB, str(installed / "plugin_core.py"), url, job],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        said, secret = plugin.stdout.readline().split()
        assert said == "submitted"
        os.kill(plugin.pid, signal.SIGKILL)  # what GIMP does on cancel
        plugin.wait(10)
        with Client(url, "observer", secret=secret) as client:  # the plug-in's own jobs
            client.fetch(job)
            kinds = [message["type"] for message in client.events(job, timeout=30)]
        assert kinds[-1] == "cancelled"
    finally:
        plugin.kill()


def test_the_watcher_leaves_a_finished_job_alone(classic_server, tmp_path) -> None:
    installed = load_core(install_into(tmp_path / "plug-ins") / "plugin_core.py", "installed")
    watcher = installed.CancelWatcher.start(classic_server.url, None)
    assert watcher.process is not None
    request = installed.decompose_request(design(), 120, 90, 0, SEED)
    client = installed.connect(classic_server.url)
    try:
        outcome = installed.run_job(client, request, FakeHost(), job=watcher.job)
    finally:
        watcher.stop()
        client.close()
    assert watcher.process.returncode == 0 and outcome.done is not None


class DroppingHost(FakeHost):
    """Drops the connection under the runner at the job's first progress report, while the
    engine still works (a drop after the last frame arrived would go unnoticed)."""

    def __init__(self, client) -> None:
        super().__init__()
        self.client = client

    def show_progress(self, fraction, text) -> None:
        super().show_progress(fraction, text)
        if len(self.progress) == 2:
            self.client._ws.close()  # as a network blip would


def busy_design(width: int = 1200, height: int = 900) -> bytes:
    """The design, large: the classic engine works on it for a second or more."""
    return design(width, height)


def test_a_dropped_connection_resumes_without_losing_or_repeating_layers(
    classic_server,
) -> None:
    request = core.decompose_request(busy_design(), 1200, 900, layers=0, seed=SEED)
    client = core.connect(classic_server.url)
    host = DroppingHost(client)
    try:
        outcome = core.run_job(
            client,
            request,
            host,
            reconnect=lambda: core.connect(classic_server.url, secret=client.secret),
        )
    finally:
        client.close()
    expected = direct(classic_server.url, "decompose", request.params, request.inputs)
    assert len(expected) >= 2 and outcome.done is not None
    assert [x["sha256"] for x in host.layers] == [x["sha256"] for x in expected]
    assert "LayerBridge: connection lost, reconnecting" in [t for _, t in host.progress]


def test_a_dropped_connection_without_reconnect_is_reported(classic_server) -> None:
    request = core.decompose_request(busy_design(), 1200, 900, layers=0, seed=SEED)
    client = core.connect(classic_server.url)
    try:
        with pytest.raises(core.JobFailed, match="connection to the LayerBridge server was lost"):
            core.run_job(client, request, DroppingHost(client))
    finally:
        client.close()


# --- the server is down, or speaks another version -------------------------------------------


def test_a_server_that_is_down_says_how_to_start_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(core.JobFailed) as failed:
        core.connect(url, open_timeout=2)
    text = str(failed.value)
    assert "not running" in text and url in text and "layerbridge serve" in text
    assert failed.value.code == "server_unavailable"


@pytest.fixture
def newer_server() -> Iterator[str]:
    """A server of another release: it answers hello with protocol_mismatch."""
    from websockets.sync.server import serve as ws_serve

    def handler(connection) -> None:
        connection.recv()
        error = protocol.error_message(protocol.PROTOCOL_MISMATCH, "this server speaks 2")
        connection.send(protocol.encode(error))

    server = ws_serve(handler, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    server.shutdown()


def test_another_protocol_version_says_to_update(newer_server) -> None:
    with pytest.raises(core.JobFailed) as failed:
        core.connect(newer_server)
    text = str(failed.value)
    assert failed.value.code == protocol.PROTOCOL_MISMATCH
    assert "another protocol version" in text and "this server speaks 2" in text
    assert "layerbridge install-gimp-plugin" in text


def test_a_refused_submit_is_shown(classic_server) -> None:
    request = core.decompose_request(design(), 120, 90, layers=0, seed=SEED)
    request.params["layers"] = 99
    with pytest.raises(core.JobFailed) as failed:
        run(classic_server.url, request)
    assert failed.value.code == protocol.TOO_MANY_LAYERS


# --- small pieces --------------------------------------------------------------------------


def test_damaged_pixels_are_refused() -> None:
    layer = {"index": 0, "data": b"\x00" * 4, "sha256": hashlib.sha256(b"\x01" * 4).hexdigest()}
    with pytest.raises(core.JobFailed, match="arrived damaged"):
        core.check_layer(layer)


def test_requests_translate_the_dialogs_conventions() -> None:
    request = core.generate_request("  a\n red   kite ", 256, 128, layers=0, seed=-1)
    seed = request.params.pop("seed")
    assert isinstance(seed, int) and 0 <= seed < 2**31  # picked here, so it is on record
    assert request.params == {
        "prompt": "a\n red   kite",
        "width": 256,
        "height": 128,
        "layers": "auto",
    }
    request.params["seed"] = seed
    assert request.title == f"a red kite [seed {seed}]"
    assert core.group_title("x" * 100).endswith("…") and len(core.group_title("x" * 100)) == 60
    protocol.validate_params("generate", request.params, protocol.Limits())


def test_regenerate_sends_layer_document_and_mask_at_the_layers_place() -> None:
    layer = bytes(4 * 3 * 2)
    mask = core.mask_from_selection(bytes([0, 255, 128, 0, 0, 255]))
    assert mask[3::4] == bytes([0, 255, 128, 0, 0, 255]) and set(mask[0::4]) == {255}
    request = core.regenerate_request("p", 3, layer, (5, 7, 3, 2), (bytes(4 * 100), 10, 10), mask)
    specs = [spec for spec, _ in request.inputs]
    assert specs == [
        protocol.InputSpec("layer", 3, 2, 5, 7),
        protocol.InputSpec("document", 10, 10, 0, 0),
        protocol.InputSpec("mask", 3, 2, 5, 7),
    ]
    protocol.submit_frames("j", request.op, request.params, request.inputs)  # sizes agree


def test_settings_are_remembered(tmp_path) -> None:
    assert core.Settings.load(tmp_path).server == "ws://127.0.0.1:7861"
    assert core.Settings.load(tmp_path).start_server is True
    core.Settings("ws://127.0.0.1:9000", "secret", False, "/opt/lb/bin/layerbridge serve").save(
        tmp_path
    )
    loaded = core.Settings.load(tmp_path)
    assert (loaded.server, loaded.token) == ("ws://127.0.0.1:9000", "secret")
    assert (loaded.start_server, loaded.serve_command) == (False, "/opt/lb/bin/layerbridge serve")
    assert loaded.with_server("").server == "ws://127.0.0.1:9000"
    assert loaded.with_server(" ws://host:1 ").server == "ws://host:1"
    assert loaded.with_server("", " other ").token == "other"
    assert loaded.with_server("", "").token == "secret"
    (tmp_path / core.SETTINGS_FILE).write_text("{broken")
    assert core.Settings.load(tmp_path).server == "ws://127.0.0.1:7861"
    core.Settings().save(tmp_path / "missing-folder")  # never raises


def test_generate_shows_the_preview_before_the_first_layer(serve, tiny_engine, tmp_path) -> None:
    url = serve(tiny_engine, output_dir=tmp_path).url
    fast = {"steps": 1, "resolution": min(tiny_engine.resolutions)}
    request = core.generate_request("a red kite", 64, 64, layers=2, seed=SEED, **fast)
    outcome, host = run(url, request)
    assert outcome.done is not None and len(host.previews) == 1
    before, preview = host.previews[0]
    assert before == 0 and (preview["width"], preview["height"]) == (64, 64)
    assert len(preview["data"]) == 64 * 64 * 4
    texts = [text for _, text in host.progress]
    assert not [t for t in texts if t.split(": ", 1)[-1].split(" ")[0] in ("peel", "denoise")]


def test_the_request_is_fitted_to_the_server(classic_server) -> None:
    with Client(classic_server.url, "fit") as client:
        welcome = client.welcome
    request = core.decompose_request(design(), 120, 90, 3, SEED, steps=30, resolution=640)
    core.fit_to_server(request, welcome)  # classic has no model: steps and resolution go
    assert "steps" not in request.params and "resolution" not in request.params
    most = welcome["capabilities"]["layers"]["max"]
    with pytest.raises(core.JobFailed, match=f"this server makes 1 to {most} layers"):
        core.fit_to_server(core.decompose_request(design(), 120, 90, most + 1, SEED), welcome)
    tiny = {"engine": "tiny", "capabilities": {"resolutions": [256, 640], "layers": {}}}
    with pytest.raises(core.JobFailed, match="Resolution 300 is not one"):
        core.fit_to_server(core.decompose_request(design(), 120, 90, 0, SEED, resolution=300), tiny)
    assert core.reduced_size(4096, 4096, 4096 * 4096) == (4096, 4096)
    width, height = core.reduced_size(8000, 4000, 4096 * 4096)
    assert width * height <= 4096 * 4096 and abs(width / height - 2) < 0.01


def test_a_local_server_is_started_when_none_answers(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}"
    command = f"{sys.executable} -m layerbridge.cli serve --output-dir {tmp_path}"
    off = core.Settings(url, start_server=False, serve_command=command)
    with pytest.raises(core.JobFailed, match='"start_server" is\nfalse|start_server'):
        core.connect_or_start(off, tmp_path)
    shown: list[str] = []
    client = core.connect_or_start(
        core.Settings(url, serve_command=command), tmp_path, shown.append
    )
    try:
        assert client.welcome["engine"] == "classic"
        assert shown and "starting the server" in shown[0] and f"--port {port}" in shown[0]
        # It keeps running for the next command, which just connects.
        again = core.connect_or_start(core.Settings(url, serve_command="false"), tmp_path)
        again.close()
    finally:
        client.close()
        stop_server_on(port, tmp_path)


def stop_server_on(port: int, log_folder: Path) -> None:
    """End the server the plug-in started (found by its port in /proc), so no test leaks it."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and str(port).encode() in args and str(log_folder).encode() in args:
            os.kill(int(proc.name), signal.SIGINT)
            for _ in range(100):
                if not proc.exists():
                    return
                time.sleep(0.1)
