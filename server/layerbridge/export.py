"""Layered files for any editor: PSD (psd-tools), OpenRaster, or PNGs with a manifest.

One function per format, all taking the same thing: layers bottom first, trimmed or
not, at document coordinates, and the document's size. The CLI and the server use
these same writers. Layer names become file names only through :func:`safe_name`, so
no name can write outside the output folder.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from layerbridge.imaging import composite, trim_to_alpha
from layerbridge.types import Layer

FORMATS = ("psd", "ora", "png")


def export_layers(layers: list[Layer], size: tuple[int, int], out: Path) -> Path:
    """Write ``layers`` to ``out`` in the format its suffix names (a folder: PNGs)."""
    suffix = out.suffix.lower()
    if suffix == ".psd":
        return write_psd(layers, size, out)
    if suffix == ".ora":
        return write_ora(layers, size, out)
    if suffix:
        raise ValueError(f"cannot write {out.name}: name a .psd or .ora file, or a folder for PNGs")
    return write_png_folder(layers, size, out)


def visible_layers(layers: list[Layer]) -> list[Layer]:
    """The layers trimmed to their alpha bounds; fully transparent ones dropped."""
    return [t for t in (trim_to_alpha(layer) for layer in layers) if t is not None]


def write_psd(layers: list[Layer], size: tuple[int, int], out: Path) -> Path:
    """A layered PSD: each layer a named pixel layer at its offset, plus the composite.

    The merged image (what file browsers, previews and single-image readers such as Pillow
    show) is the layers' own over-composite, written here rather than by psd-tools, whose
    layered documents carry a fully transparent one.
    """
    from psd_tools import PSDImage  # imported here: only PSD export needs it

    width, height = size
    shown = visible_layers(layers)
    psd = PSDImage.new("RGBA", (width, height), color=(0, 0, 0, 0))
    for layer in shown:
        psd.create_pixel_layer_from_array(
            np.ascontiguousarray(layer.pixels),
            name=layer.name,
            top=int(layer.y),
            left=int(layer.x),
        )
    layered = io.BytesIO()
    psd.save(layered)
    record = with_merged_image(layered.getvalue(), composite(shown, width, height))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as file:
        record.write(file)
    return out


def with_merged_image(psd_bytes: bytes, flat: np.ndarray) -> Any:
    """The PSD read back at the file-format level, its merged image set to ``flat``.

    Photoshop stores the merged colours composited over white, with the composite's alpha
    as the first extra channel, announced by a negative layer count (the PSD specification,
    "Layer info"); readers that know this (psd-tools, Photoshop) undo the white, the others
    show the picture as it would look on a white page.
    """
    from psd_tools.psd import PSD

    record = PSD.read(io.BytesIO(psd_bytes))
    alpha = flat[..., 3:4].astype(np.float64) / 255.0
    on_white = np.rint(flat[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    planes = [np.ascontiguousarray(on_white[..., c]).tobytes() for c in range(3)]
    planes.append(np.ascontiguousarray(flat[..., 3]).tobytes())
    record.image_data.set_data(planes, record.header)
    layer_info = record.layer_and_mask_information.layer_info
    if layer_info is not None and layer_info.layer_count:
        layer_info.layer_count = -abs(layer_info.layer_count)
    return record


def write_ora(layers: list[Layer], size: tuple[int, int], out: Path) -> Path:
    """OpenRaster (a zip read by GIMP, Krita, MyPaint): stack.xml lists layers top first."""
    width, height = size
    shown = visible_layers(layers)
    entries = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as ora:
        # The mimetype must come first and uncompressed, so tools can sniff the format.
        ora.writestr(zipfile.ZipInfo("mimetype"), "image/openraster", zipfile.ZIP_STORED)
        for index, layer in enumerate(shown):
            path = f"data/layer{index:03d}.png"
            ora.writestr(path, png_bytes(layer.pixels))
            entries.append(
                f"<layer name={quoteattr(layer.name)} src={quoteattr(path)} "
                f'x="{layer.x}" y="{layer.y}" opacity="1.0" visibility="visible"/>'
            )
        stack = (
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            f'<image version="0.0.3" w="{width}" h="{height}"><stack>'
            + "".join(reversed(entries))
            + "</stack></image>"
        )
        ora.writestr("stack.xml", stack)
        flat = composite(shown, width, height)
        ora.writestr("mergedimage.png", png_bytes(flat))
        thumb = Image.fromarray(flat, "RGBA")
        thumb.thumbnail((256, 256))
        ora.writestr("Thumbnails/thumbnail.png", png_bytes(np.asarray(thumb)))
    return out


def write_png_folder(layers: list[Layer], size: tuple[int, int], out: Path) -> Path:
    """One PNG per layer (bottom first) and ``manifest.json`` with names and offsets."""
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"width": size[0], "height": size[1], "layers": []}
    for index, layer in enumerate(visible_layers(layers)):
        file_name = f"{index:03d}-{safe_name(layer.name)}.png"
        (out / file_name).write_bytes(png_bytes(layer.pixels))
        manifest["layers"].append(
            {
                "index": index,
                "name": layer.name,
                "file": file_name,
                "x": layer.x,
                "y": layer.y,
                "width": int(layer.pixels.shape[1]),
                "height": int(layer.pixels.shape[0]),
            }
        )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def safe_name(name: str) -> str:
    """A file-name fragment from a layer name: no separators, no dots first, bounded."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-.")
    return cleaned[:60] or "layer"


def png_bytes(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8), "RGBA").save(buffer, "PNG")
    return buffer.getvalue()
