"""The `layerbridge` command as a user runs it: real processes, real files."""

from __future__ import annotations

import os
import signal
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
from tests.helpers import as_layers, image_input, start_cli_server
from tests.synthetic import flat_design as design

LAYERBRIDGE = [sys.executable, "-m", "layerbridge.cli"]


def read_psd_layers(path: Path) -> tuple[PSDImage, list]:
    psd = PSDImage.open(path)
    return psd, [layer for layer in psd.descendants() if not layer.is_group()]


def test_decompose_writes_a_psd_that_reads_back(tmp_path: Path) -> None:
    image = design(200, 150, seed=7)
    source = tmp_path / "in.png"
    Image.fromarray(image).save(source)
    out = tmp_path / "out.psd"
    run = subprocess.run(
        [*LAYERBRIDGE, "decompose", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
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
