"""Layer names that say what a layer holds: "Text 3 (white)", "Shape 2 (red)", "Image 1".

An editor shows these in its layers panel; a user looks for "the red shape" or "the white
text", so the name carries the kind and, for one flat colour, that colour's common name.
"""

from __future__ import annotations

import colorsys

import numpy as np

from layerbridge.engines.classic.regions import Element

KIND_LABELS = {"text": "Text", "shape": "Shape", "photo": "Photo", "texture": "Image",
               "code": "QR code"}
#: Hue (degrees) where each named colour ends, going round the wheel from red.
HUE_NAMES = ((15, "red"), (40, "orange"), (65, "yellow"), (160, "green"), (195, "cyan"),
             (255, "blue"), (290, "purple"), (335, "magenta"), (360, "red"))


def layer_name(element: Element, number: int) -> str:
    """The kind, its number among the layers, and the colour where there is one."""
    label = f"{KIND_LABELS.get(element.kind, 'Layer')} {number}"
    if element.color is None:
        return label
    return f"{label} ({colour_name(element.color)})"


def colour_name(rgb: np.ndarray) -> str:
    """A common name of an sRGB colour (floats 0..1): greys by lightness, else by hue."""
    hue, lightness, saturation = colorsys.rgb_to_hls(*(float(c) for c in rgb[:3]))
    if lightness < 0.12:
        return "black"
    if lightness > 0.92:
        return "white"
    if saturation < 0.15 or (lightness < 0.2 and saturation < 0.4):
        return "grey"
    degrees = hue * 360
    name = next(name for end, name in HUE_NAMES if degrees < end or end == 360)
    if name == "orange" and lightness < 0.35:
        return "brown"
    if name in ("red", "magenta") and lightness > 0.75:
        return "pink"
    return name
