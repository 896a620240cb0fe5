"""The command line reads images as an editor shows them: a real `layerbridge decompose`
process on real files (16-bit greyscale PNG, a JPEG with EXIF orientation, a PNG that
declares a gigantic size), its PSD read back with psd-tools."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from layerbridge.engines.base import Layer
from layerbridge.imaging import composite
from tests.helpers import read_psd_layers
from tests.synthetic import flat_design as design

LAYERBRIDGE = [sys.executable, "-m", "layerbridge.cli"]


def decompose(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LAYERBRIDGE, "decompose", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
    )


def psd_composite(path: Path) -> np.ndarray:
    psd, layers = read_psd_layers(path)
    return composite(
        [Layer(p.name, np.asarray(p.topil().convert("RGBA")), p.left, p.top) for p in layers],
        psd.width,
        psd.height,
    )


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    # Four flat bands at 1/8, 3/8, 5/8 and 7/8 of the 16-bit range (what a scanner writes).
    levels = np.array([8192, 24576, 40960, 57344], np.uint16)
    grey16 = np.repeat(np.repeat(levels, 20)[None, :], 40, axis=0)
    source = tmp_path / "scan16.png"
    Image.fromarray(grey16).save(source)
    assert Image.open(source).mode.startswith("I")  # really a 16-bit file
    run = decompose(source, tmp_path / "out.psd")
    assert run.returncode == 0, run.stderr
    flat = psd_composite(tmp_path / "out.psd")
    expected = np.round(grey16 / 257).astype(int)  # 32, 96, 159, 223
    assert np.abs(flat[..., 0].astype(int) - expected).max() <= 1
    assert (flat[..., 3] == 255).all()
    from layerbridge.image_files import scale_to_8_bits

    assert scale_to_8_bits(np.array([0, 128, 32768, 65535]), 65535).tolist() == [0, 0, 128, 255]


def exif_rotated_jpeg(path: Path, upright: np.ndarray) -> None:
    """Save ``upright`` as a camera would: pixels stored turned 90 degrees to the left
    (as the sensor saw them), with EXIF orientation 6 (turn right to show)."""
    stored = np.rot90(upright[..., :3], 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=98, exif=exif)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = design(90, 60, seed=4)  # 90 wide, 60 tall
    source = tmp_path / "photo.jpg"
    exif_rotated_jpeg(source, upright)
    assert Image.open(source).size == (60, 90)  # stored sideways
    run = decompose(source, tmp_path / "out.psd")
    assert run.returncode == 0, run.stderr
    flat = psd_composite(tmp_path / "out.psd")
    assert flat.shape[:2] == (60, 90)
    error = np.abs(flat[..., :3].astype(int) - upright[..., :3]).mean()
    assert error < 6, error  # JPEG's loss only, not a rotated picture
    from layerbridge.image_files import read_image

    assert np.array_equal(read_image(source).shape, (60, 90, 4))


def png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb's
    signature: Pillow refuses it from the header, before any pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_gets_one_line_naming_the_limit(tmp_path: Path) -> None:
    for size in (30000, 12000):  # past Pillow's error limit, and past its warning limit
        source = tmp_path / f"bomb{size}.png"
        png_header_only(source, size, size)
        run = decompose(source, tmp_path / "out.psd")
        assert run.returncode != 0
        assert "Traceback" not in run.stderr, run.stderr
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, run.stderr
        # The limit named is the command line's --max-pixels (16777216 by default), which is
        # below Pillow's own bomb limit: either way the image is refused before it is decoded.
        assert f"{size}x{size}" in lines[0] and "over the limit of 16777216" in lines[0], lines[0]
        assert not (tmp_path / "out.psd").exists()
