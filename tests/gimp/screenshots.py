"""Screenshots of the GIMP plug-in for the READMEs (``make screenshots``).

In the trixie root the real-GIMP test uses: install the plug-in, start ``layerbridge serve``,
run GIMP's GUI on a virtual display (Xvfb), decompose the sample poster and open the
Decompose dialog (``gimp_batch.py``, mode ``screenshots``); xwd writes the screen, and this
script turns it into PNG.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tests.gimp.run_gimp_test import (  # noqa: E402
    HERE,
    REPO,
    install_plugin,
    run_gimp_gui,
    start_server,
)


def xwd_to_png(xwd: Path, png: Path, crop: tuple[int, int, int, int] | None = None) -> None:
    """A 24/32-bit ZPixmap XWD file (what xwd writes on Xvfb) as a PNG."""
    data = xwd.read_bytes()
    header = struct.unpack(">25I", data[:100])
    header_size, pixmap_format, width, height = header[0], header[2], header[4], header[5]
    byte_order, bits_per_pixel, bytes_per_line, ncolors = (
        header[7],
        header[11],
        header[12],
        header[19],
    )
    if pixmap_format != 2 or bits_per_pixel not in (24, 32):
        raise SystemExit(
            f"{xwd}: a {bits_per_pixel}-bit format-{pixmap_format} XWD; expected a ZPixmap"
        )
    size = bits_per_pixel // 8
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data[start : start + bytes_per_line * height], np.uint8)
    pixels = rows.reshape(height, bytes_per_line)[:, : width * size].reshape(height, width, size)
    # LSB first (Xvfb on x86): blue, green, red; MSB first: the other way round.
    rgb = pixels[..., [2, 1, 0]] if byte_order == 0 else pixels[..., [size - 3, size - 2, size - 1]]
    picture = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if crop:
        picture = picture.crop(crop)
    picture.save(png, optimize=True)
    print(f"wrote {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the trixie root with GIMP")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    work = "/tmp/layerbridge-gimp-screenshots"
    host_work = args.root / work.lstrip("/")
    shutil.rmtree(host_work, ignore_errors=True)
    (host_work / "out").mkdir(parents=True)
    shutil.copy(HERE / "gimp_batch.py", host_work / "gimp_batch.py")
    shutil.copy(REPO / "samples" / "poster.png", host_work / "poster.png")
    server, url = start_server("classic", host_work / "server.log")
    if server is None:
        raise SystemExit(f"the server did not start: {url}")
    try:
        install_plugin(args.root, work)
        config = {
            "mode": "screenshots",
            "url": url,
            "seed": 7,
            "poster": f"{work}/poster.png",
            "decomposed": f"{work}/out/decomposed.xwd",
            "dialog": f"{work}/out/dialog.xwd",
            "results": f"{work}/out/screenshots.json",
        }
        run_gimp_gui(args.root, work, config, "screenshots")
        args.out.mkdir(parents=True, exist_ok=True)
        xwd_to_png(
            host_work / "out" / "decomposed.xwd",
            args.out / "gimp-decomposed.png",
            (0, 0, 1280, 800),
        )
        xwd_to_png(
            host_work / "out" / "dialog.xwd", args.out / "gimp-dialog.png", (0, 0, 1280, 800)
        )
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(host_work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
