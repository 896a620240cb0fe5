"""The `layerbridge` command as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from psd_tools import PSDImage

from layerbridge.client import Client
from layerbridge.engines.base import Layer
from layerbridge.imaging import composite
from tests.helpers import as_layers, image_input, read_psd_layers, start_cli_server
from tests.synthetic import flat_design as design

LAYERBRIDGE = [sys.executable, "-m", "layerbridge.cli"]


def test_decompose_writes_a_psd_that_reads_back(tmp_path: Path) -> None:
    image = design(200, 150, seed=7)
    source = tmp_path / "in.png"
    Image.fromarray(image).save(source)
    out = tmp_path / "out.psd"
    run = run_cli("decompose", str(source), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "layers" in run.stdout
    psd, layers = read_psd_layers(out)
    assert (psd.width, psd.height) == (200, 150) and len(layers) >= 2
    flat = composite(
        [Layer(p.name, np.asarray(p.topil().convert("RGBA")), p.left, p.top) for p in layers],
        200,
        150,
    )
    assert np.abs(flat.astype(int) - image).max() <= 1


def over_white(flat: np.ndarray) -> np.ndarray:
    """RGB of ``flat`` laid on a white page: Photoshop's stored form of the merged image."""
    alpha = flat[..., 3:4].astype(np.float64) / 255.0
    return np.rint(flat[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(int)


def psd_layers_composite(path: Path, width: int, height: int) -> np.ndarray:
    _, layers = read_psd_layers(path)
    return composite(
        [Layer(p.name, np.asarray(p.topil().convert("RGBA")), p.left, p.top) for p in layers],
        width,
        height,
    )


def test_decompose_psd_merged_image_is_the_picture(tmp_path: Path) -> None:
    """The flattened image every PSD reader without layer support shows (Pillow here)."""
    image = design(120, 90, seed=3)
    source = tmp_path / "in.png"
    Image.fromarray(image).save(source)
    out = tmp_path / "out.psd"
    run = run_cli("decompose", str(source), "-o", str(out))
    assert run.returncode == 0, run.stderr
    with Image.open(out) as merged:
        pixels = np.asarray(merged.convert("RGBA")).astype(int)
    flat = psd_layers_composite(out, 120, 90)
    assert np.abs(pixels - flat).max() <= 1
    assert np.abs(pixels - image).max() <= 1


def test_psd_merged_image_keeps_transparency(tmp_path: Path) -> None:
    """Layers that leave holes and soft edges: the merged alpha is theirs, the colours are
    theirs over white (as Photoshop stores them), and psd-tools reads the colours back."""
    from layerbridge.export import export_layers

    disc = np.zeros((40, 40, 4), np.uint8)
    yy, xx = np.mgrid[:40, :40]
    disc[..., :3] = (30, 90, 200)
    disc[..., 3] = np.clip(255 - 12 * np.hypot(yy - 20, xx - 20), 0, 255).astype(np.uint8)
    veil = np.zeros((20, 50, 4), np.uint8)
    veil[...] = (250, 200, 0, 128)
    layers = [Layer("disc", disc, 5, 5), Layer("veil", veil, 10, 30)]
    out = export_layers(layers, (64, 64), tmp_path / "holes.psd")
    flat = composite(layers, 64, 64)
    with Image.open(out) as merged:
        pixels = np.asarray(merged.convert("RGBA")).astype(int)
    assert np.abs(pixels[..., 3] - flat[..., 3]).max() <= 1
    assert np.abs(pixels[..., :3] - over_white(flat)).max() <= 1
    assert np.abs(psd_layers_composite(out, 64, 64).astype(int) - flat).max() <= 1
    read_back = np.asarray(PSDImage.open(out).topil().convert("RGBA")).astype(int)
    assert np.abs(read_back[..., 3] - flat[..., 3]).max() <= 1
    opaque = flat[..., 3] == 255
    assert opaque.any() and np.abs(read_back[opaque] - flat[opaque]).max() <= 1


@pytest.mark.parametrize("suffix", [".ora", ""])
def test_decompose_writes_ora_and_png_folders(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / "in.png"
    Image.fromarray(design(80, 60, seed=2)).save(source)
    out = tmp_path / f"layers{suffix}"
    run = subprocess.run(
        [*LAYERBRIDGE, "decompose", str(source), "-o", str(out), "--layers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert out.exists()
    if not suffix:
        assert (out / "manifest.json").exists()


def test_decompose_explains_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    run = subprocess.run(
        [*LAYERBRIDGE, "decompose", str(bad), "-o", str(tmp_path / "x.psd")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "cannot read" in run.stderr


def test_serve_prints_its_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    server, url = start_cli_server(tmp_path)
    try:
        image = design(64, 48)
        with Client(url, "cli-test") as client:
            result = client.run("decompose", {"save": "out.psd"}, [image_input(image)])
        flat = composite(as_layers(result.layers), 64, 48)
        assert np.abs(flat.astype(int) - image).max() <= 1
        assert (tmp_path / "out.psd").exists()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(30) == 0


def test_serve_refuses_an_open_bind_without_token() -> None:
    run = subprocess.run(
        [*LAYERBRIDGE, "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "LAYERBRIDGE_TOKEN"},
    )
    assert run.returncode != 0 and "--token" in run.stderr


def test_serve_qwen_without_weights_says_how_to_fetch_them(tmp_path: Path) -> None:
    run = subprocess.run(
        [*LAYERBRIDGE, "serve", "--engine", "qwen", "--port", "0", "--model-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "Qwen/Qwen-Image-Layered" in run.stderr and "download" in run.stderr
    assert str(tmp_path) in run.stderr


# --- the command line as a designer meets it -------------------------------------------


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LAYERBRIDGE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def one_line_error(run: subprocess.CompletedProcess) -> str:
    """The whole of stderr: one line, no traceback, naming the command."""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr and lines[0].startswith("layerbridge")
    return lines[0]


@pytest.fixture
def two_images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(design(80, 60, seed=1)).save(folder / "first.png")
    Image.fromarray(design(80, 60, seed=2)).save(folder / "second.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--layers", "0"], "--layers"),
        (["--layers", "50"], "1 to 10"),
        (["--layers", "abc"], "--layers"),
        (["--seed", "-1"], "--seed"),
        (["-o", "x.tiff"], ".psd or .ora"),
        (["--format", "ora", "-o", "x.psd"], "--format"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, two_images: Path, arguments: list[str], says: str
) -> None:
    run = run_cli(
        "decompose", str(two_images / "first.png"), "-o", "out.psd", *arguments, cwd=tmp_path
    )
    assert run.returncode == 2
    assert says in one_line_error(run)
    assert not list(tmp_path.glob("x.*")) and not (tmp_path / "out.psd").exists()


def test_inputs_that_cannot_work_exit_2_before_any_work(tmp_path: Path, two_images: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for arguments, says in [
        ([str(empty), "-o", "out"], "no image files"),
        ([str(tmp_path / "missing.png"), "-o", "out.psd"], "no such file"),
        ([str(two_images), "-o", "one.psd"], "name a folder"),
    ]:
        run = run_cli("decompose", *arguments, cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        assert says in one_line_error(run)


def test_layer_limits_are_the_servers(tmp_path: Path, two_images: Path) -> None:
    """The command line takes exactly the layer counts a server of the same engine takes."""
    server, url = start_cli_server(tmp_path)
    try:
        with Client(url, "cli-test") as client:
            most = client.welcome["capabilities"]["layers"]["max"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    image = str(two_images / "first.png")
    over = run_cli("decompose", image, "-o", "over.psd", "--layers", str(most + 1), cwd=tmp_path)
    assert over.returncode == 2 and f"to {most} layers" in one_line_error(over)
    at = run_cli("decompose", image, "-o", "at.psd", "--layers", str(most), cwd=tmp_path)
    assert at.returncode == 0, at.stderr


def test_existing_results_need_force(tmp_path: Path, two_images: Path) -> None:
    image = str(two_images / "first.png")
    (tmp_path / "out.psd").write_bytes(b"keep me")
    refused = run_cli("decompose", image, "-o", "out.psd", cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in one_line_error(refused)
    assert (tmp_path / "out.psd").read_bytes() == b"keep me"
    forced = run_cli("decompose", image, "-o", "out.psd", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert PSDImage.open(tmp_path / "out.psd").width == 80


def test_a_folder_in_gives_one_result_each_and_json_out(tmp_path: Path, two_images: Path) -> None:
    run = run_cli(
        "decompose", str(two_images), "-o", "results", "--json", "--seed", "7", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    reports = [json.loads(line) for line in run.stdout.splitlines()]
    assert [Path(r["image"]).name for r in reports] == ["first.png", "second.png"]
    for report in reports:
        out = tmp_path / report["output"]
        assert out.suffix == ".psd" and out.stem == Path(report["image"]).stem
        psd, layers = read_psd_layers(out)
        assert [layer.name for layer in layers] == [entry["name"] for entry in report["layers"]]
        assert report["seed"] == 7 and report["engine"] == "classic"
    # Not a terminal: progress is plain lines, one per stage or tenth, never redrawn.
    assert "\r" not in run.stderr
    progress = [line for line in run.stderr.splitlines() if line.startswith("[")]
    assert any(line.startswith("[1/2] first.png: separating layers") for line in progress)
    assert any(line.startswith("[2/2] second.png") for line in progress)
    assert len(progress) == len(set(progress))


def test_several_images_in_another_format(tmp_path: Path, two_images: Path) -> None:
    images = [str(two_images / "first.png"), str(two_images / "second.png")]
    run = run_cli(
        "decompose", *images, "-o", "pngs", "--format", "png", "--progress", "none", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("\n") <= 1  # the engine's ready line only
    for stem in ("first", "second"):
        assert (tmp_path / "pngs" / stem / "manifest.json").exists()
    assert run.stdout.count("wrote") == 2 and "seed" in run.stdout


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_cli(
            "--log-level", "warning", "serve", "--port", str(port), "--output-dir", str(tmp_path)
        )
    assert run.returncode == 1
    line = one_line_error(run)
    assert f":{port}" in line and "in use" in line and "--port" in line
