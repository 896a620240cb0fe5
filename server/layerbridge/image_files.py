"""Reading an image file as an editor shows it: upright, in full tonal range, or refused.

Pillow's ``convert("RGBA")`` alone clips 16-bit greyscale at 255 (a mid-grey 16-bit PNG
turns white), ignores the EXIF orientation a camera wrote (a portrait photo comes out
sideways), and raises a traceback-worthy ``DecompressionBombError`` for huge images.
:func:`read_image` fixes all three and raises :class:`ImageFileError` with one line that
names the problem and the way out.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: Pillow's own guard against decompression bombs: about 89.5 megapixels.
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)

# Modes holding more than 8 bits per sample, and the largest sample value of each.
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageFileError(ValueError):
    """An image file that cannot be read, with a message that says why and what to do."""


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image at ``path`` as an (h, w, 4) uint8 RGBA array, upright."""
    try:
        with _own_size_check(), Image.open(path) as image:
            _check_size(path, image.size, max_pixels)
            return to_rgba8(ImageOps.exif_transpose(image))
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's "cannot identify", truncated
        if isinstance(exc, ImageFileError):
            raise
        raise ImageFileError(f"cannot read {path}: {exc}") from exc


@contextlib.contextmanager
def _own_size_check() -> Iterator[None]:
    """Pillow's bomb check off while the header is read: it would raise a message without
    the image's size; :func:`_check_size` refuses the same images, naming the size, before
    any pixel is decoded."""
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_size(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageFileError(
            f"{path} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} pixels: scale it down first (a decompression bomb is refused too)"
        )


def to_rgba8(image: Image.Image) -> np.ndarray:
    """Any Pillow image as RGBA8, wide samples scaled (not clipped) to 8 bits."""
    if image.mode in _WIDE_MODES:
        grey = scale_to_8_bits(np.asarray(image), _WIDE_MODES[image.mode])
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    if image.mode == "F":  # 32-bit float greyscale, taken as 0..1
        grey = np.clip(np.rint(np.asarray(image, np.float64) * 255), 0, 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    return np.asarray(image.convert("RGBA"))


def scale_to_8_bits(samples: np.ndarray, max_value: int) -> np.ndarray:
    """Samples in 0..max_value to 0..255, rounded to nearest (65535 -> 255, 32768 -> 128)."""
    wide = np.clip(samples.astype(np.int64), 0, max_value)
    return ((wide * 255 + max_value // 2) // max_value).astype(np.uint8)
