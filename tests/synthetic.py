"""Synthetic designs with known layers: a background, shapes and text lines.

Every layer is drawn on its own transparent canvas (shapes supersampled 4x and shrunk with
premultiplied resampling, text by FreeType), so edges are anti-aliased as in real designs,
and the composite is the over-composite of the true layers. Same seed, same design.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from layerbridge.engines.base import Layer
from layerbridge.imaging import composite, resize_premultiplied

_WORDS = ["SUMMER", "sale", "Open", "late", "design", "fresh", "coffee", "LIVE", "music",
          "new", "menu", "today", "join", "us", "Friday", "tickets"]
_SS = 4


def design(
    seed: int, width: int = 640, height: int = 480, shapes: int = 4, lines: int = 3
) -> tuple[list[np.ndarray], np.ndarray]:
    """(true layers as uint8 RGBA canvases bottom first, their uint8 RGBA composite)."""
    rng = np.random.default_rng(seed)
    colors = _distinct_colors(rng, 1 + shapes + lines)
    layers = [_background(rng, width, height, colors[0])]
    for k in range(shapes):
        layers.append(_shape(rng, width, height, colors[1 + k]))
    for k in range(lines):
        layers.append(_text(rng, width, height, colors[1 + shapes + k], k, lines))
    stack = [Layer("layer", layer) for layer in layers]
    return layers, composite(stack, width, height)


def _distinct_colors(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` colours pairwise far apart, so every element is visible against the others."""
    out: list[np.ndarray] = []
    while len(out) < n:
        c = rng.integers(0, 256, 3)
        if all(np.abs(c - o).max() >= 70 for o in out):
            out.append(c)
    return out


def _background(rng: np.random.Generator, w: int, h: int, color: np.ndarray) -> np.ndarray:
    out = np.empty((h, w, 4), np.uint8)
    out[..., 3] = 255
    if rng.random() < 0.5:
        out[..., :3] = color
        return out
    end = np.clip(color + rng.integers(-60, 61, 3), 0, 255)
    angle = rng.uniform(0, np.pi)
    ys, xs = np.mgrid[0:h, 0:w]
    t = (xs * np.cos(angle) + ys * np.sin(angle)).astype(np.float64)
    t = (t - t.min()) / max(np.ptp(t), 1.0)
    out[..., :3] = np.rint(color + (end - color) * t[..., None]).astype(np.uint8)
    return out


def _shape(rng: np.random.Generator, w: int, h: int, color: np.ndarray) -> np.ndarray:
    big = Image.new("RGBA", (w * _SS, h * _SS), (*map(int, color), 0))
    draw = ImageDraw.Draw(big)
    sw, sh = rng.uniform(0.15, 0.4) * w, rng.uniform(0.15, 0.4) * h
    x0, y0 = rng.uniform(0, w - sw), rng.uniform(0, h - sh)
    box = [int(v * _SS) for v in (x0, y0, x0 + sw, y0 + sh)]
    fill = (*map(int, color), 255)
    kind = rng.integers(0, 4)
    if kind == 0:
        draw.rectangle(box, fill=fill)
    elif kind == 1:
        draw.ellipse(box, fill=fill)
    elif kind == 2:
        draw.rounded_rectangle(box, radius=int(min(sw, sh) * _SS * 0.2), fill=fill)
    else:
        cx, cy, r = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, min(sw, sh) * _SS / 2
        pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 6)[:-1]]
        draw.polygon(pts, fill=fill)
    return resize_premultiplied(np.asarray(big), (w, h))


def _text(
    rng: np.random.Generator, w: int, h: int, color: np.ndarray, k: int, lines: int
) -> np.ndarray:
    size = int(rng.uniform(0.045, 0.09) * h)
    font = ImageFont.load_default(size=size)
    words = " ".join(rng.choice(_WORDS, int(rng.integers(1, 4))))
    img = Image.new("RGBA", (w, h), (*map(int, color), 0))
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), words, font=font)
    band = h / (lines + 1)
    x = rng.uniform(0.02 * w, max(0.98 * w - (right - left), 0.03 * w))
    y = band * (k + 0.6) + rng.uniform(-0.2, 0.2) * band
    draw.text((x - left, y - top), words, font=font, fill=(*map(int, color), 255))
    return np.asarray(img).copy()


# --- flat designs without a layer truth, for the server and plug-in tests -------------------


def flat_design(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """A flat design: a background, two rectangles and a disc, opaque."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 4), np.uint8)
    image[...] = (*rng.integers(150, 255, 3), 255)
    image[10:50, 20:90, :3] = rng.integers(0, 120, 3)
    image[60:110, 70:150, :3] = rng.integers(0, 120, 3)
    yy, xx = np.mgrid[:height, :width]
    image[(yy - 40) ** 2 + (xx - 120) ** 2 < 20**2, :3] = (200, 30, 30)
    return image


def two_box_design(width: int = 120, height: int = 90) -> bytes:
    """An opaque picture with two flat boxes on a light background, as the GIMP plug-in
    reads a document: RGBA bytes."""
    image = np.zeros((height, width, 4), np.uint8)
    image[:] = (235, 230, 220, 255)
    image[8:40, 10:50] = (200, 40, 40, 255)
    image[50:80, 60:110] = (30, 90, 200, 255)
    return image.tobytes()


def photo_like(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    """A smooth, noisy, photo-like image: blurred noise fields plus a soft blob subject."""
    import cv2

    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 12)
    field = (field - field.min()) / np.ptp(field)
    ys, xs = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((ys - h / 2) / (h / 4)) ** 2 + ((xs - w / 2) / (w / 5)) ** 2))[..., None]
    img = field * (1 - blob) + blob * np.array([0.8, 0.5, 0.3]) + rng.normal(0, 0.02, (h, w, 3))
    return opaque(np.clip(img * 255, 0, 255).astype(np.uint8))


def opaque(rgb: np.ndarray) -> np.ndarray:
    """An alpha channel of 255 added to uint8 RGB."""
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)


def spaced_capitals(lines: int, width: int = 640, step: int = 19
                    ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A page of ``lines`` lines of letter-spaced capitals, a glyph every ``step`` pixels
    (each apart from the next), anti-aliased by FreeType; also each line's box (y0, y1, x0,
    x1). Hundreds of glyphs: a page the classic engine takes in blocks."""
    height = 20 + 24 * lines + 20
    page = Image.new("RGB", (width, height), (250, 246, 240))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=16)
    text, boxes = "SPACED OUT CAPITALS READ WELL", []
    for k in range(lines):
        x, y = 20, 20 + 24 * k
        for ch in (text[k % 5:] * (width // (step * len(text)) + 1)):
            if x + step > width - 20:
                break
            draw.text((x, y), ch, fill=(30, 30, 90), font=font)
            x += 4 if ch == " " else step  # a word space: a letter gap and a space
        boxes.append((y, y + 24, 20, x))
    return np.dstack([np.asarray(page), np.full((height, width), 255, np.uint8)]), boxes
