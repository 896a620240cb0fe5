"""Layered files for any editor: PSD (psd-tools), OpenRaster, or PNGs with a manifest.

One function per format, all taking the same thing: layers bottom first, trimmed or
not, at document coordinates, and the document's size. The CLI and the server use
these same writers. Layer names become file names only through :func:`safe_name`, so
no name can write outside the output folder.

A server writes a client's file only through :func:`save_layers`: the name must pass
:func:`check_save_name` (the one rule the protocol also applies before the job runs), the
bytes go into a new temporary file that nothing else can be (``O_EXCL | O_NOFOLLOW``: never
a symlink, a FIFO or another job's file), and the finished file is linked in under a name
no file has yet, so nothing that already exists in the folder is ever opened or replaced.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from layerbridge.imaging import composite, trim_to_alpha
from layerbridge.types import Layer, quoted

FORMATS = ("psd", "ora", "png")

#: What a save name may be, for people (error messages) and for :func:`check_save_name`.
SAVE_NAME_RULE = (
    "a plain file name ending in .psd or .ora: ASCII letters, digits, spaces and _ . ( ) -, "
    "not starting with a dot or a space, at most 150 characters (no folders)"
)
# re.ASCII: with IGNORECASE alone, "ſ" (long s) and "K" (Kelvin) would match "s" and "k".
_SAVE_NAME = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9 _.()-]{0,145}\.(?:psd|ora)", re.IGNORECASE | re.ASCII
)
#: Distinct names tried ("x.psd", "x (2).psd", ...) before a random one is used.
UNIQUE_NAME_TRIES = 100


def export_layers(layers: list[Layer], size: tuple[int, int], out: Path) -> Path:
    """Write ``layers`` to ``out`` in the format its suffix names (a folder: PNGs).

    A file is written beside ``out`` and renamed over it once complete, so a reader never
    sees half a file and a symlink at ``out`` is replaced, not written through.
    """
    suffix = out.suffix.lower()
    if suffix not in ("", ".psd", ".ora"):
        raise ValueError(f"cannot write {out.name}: name a .psd or .ora file, or a folder for PNGs")
    if not suffix:
        return write_png_folder(layers, size, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with os.fdopen(os.open(temporary, flags, 0o644), "wb") as file:
            _write_format(layers, size, suffix, file)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return out


def check_save_name(name: object) -> str:
    """Return ``name`` if a server may write a file of that name into its output folder;
    raise ValueError naming the rule otherwise. The protocol calls this before a job runs
    and :func:`save_layers` again before writing, so both agree by construction."""
    if not isinstance(name, str) or not name.isascii() or not _SAVE_NAME.fullmatch(name):
        raise ValueError(f"'save' must be {SAVE_NAME_RULE}, not {quoted(name)}")
    return name


def save_layers(layers: list[Layer], size: tuple[int, int], folder: Path, name: str) -> Path:
    """Write ``layers`` as ``folder/name`` (or ``name (2)``, ... if taken); return the path.

    Nothing already in ``folder`` is opened, followed or replaced: the file is written to a
    new temporary file and then hard-linked under the first free name.
    """
    check_save_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    temporary = f".layerbridge-{uuid.uuid4().hex}.part"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(temporary, flags, 0o644, dir_fd=folder_fd), "wb") as file:
            _write_format(layers, size, Path(name).suffix.lower(), file)
        return folder / _link_unique(folder_fd, temporary, name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=folder_fd)
        os.close(folder_fd)


def _write_format(layers: list[Layer], size: tuple[int, int], suffix: str, file: BinaryIO) -> None:
    if suffix == ".psd":
        write_psd(layers, size, file)
    elif suffix == ".ora":
        write_ora(layers, size, file)
    else:
        raise ValueError(f"cannot write a {suffix!r} file: name a .psd or .ora file")


def unique_names(name: str) -> list[str]:
    """``name``, then ``stem (2).suffix`` and so on, then one random name."""
    stem, suffix = name[: -len(Path(name).suffix)], Path(name).suffix
    tries = [name] + [f"{stem} ({n}){suffix}" for n in range(2, UNIQUE_NAME_TRIES + 1)]
    return tries + [f"{stem} {uuid.uuid4().hex[:12]}{suffix}"]


def _link_unique(folder_fd: int, temporary: str, name: str) -> str:
    """Give the temporary file the first free name; a link never replaces an existing entry
    (file, symlink, FIFO), unlike a rename."""
    for candidate in unique_names(name):
        try:
            os.link(
                temporary,
                candidate,
                src_dir_fd=folder_fd,
                dst_dir_fd=folder_fd,
                follow_symlinks=False,
            )
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name like {name!r} in the output folder")


def warm_up() -> None:
    """Write a one-pixel PSD and ORA in memory, so that the libraries saving needs (psd-tools
    brings SciPy, some 50 MB) are loaded when the server starts rather than by a client's
    first save, and stay part of its baseline instead of looking like memory a job kept."""
    pixel = [Layer("warm-up", np.zeros((1, 1, 4), np.uint8), 0, 0)]
    for suffix in (".psd", ".ora"):
        _write_format(pixel, (1, 1), suffix, io.BytesIO())


def visible_layers(layers: list[Layer]) -> list[Layer]:
    """The layers trimmed to their alpha bounds; fully transparent ones dropped."""
    return [t for t in (trim_to_alpha(layer) for layer in layers) if t is not None]


def write_psd(layers: list[Layer], size: tuple[int, int], out: BinaryIO) -> None:
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
    with_merged_image(layered.getvalue(), composite(shown, width, height)).write(out)


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


def write_ora(layers: list[Layer], size: tuple[int, int], out: BinaryIO) -> None:
    """OpenRaster (a zip read by GIMP, Krita, MyPaint): stack.xml lists layers top first."""
    width, height = size
    shown = visible_layers(layers)
    entries = []
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
