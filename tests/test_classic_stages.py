"""The classic pipeline's stages, each run alone on a small scene made for it: regions and
background find the elements, the text stage joins a line's glyphs into one element, the
order stage puts an element that covers another above it, the merge stage joins the most
alike, and the peeled layers over-composite to the input. The loop reports every stage by
name and stops at a cancel between stages. Every threshold is one field of Tuning."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from layerbridge.engines.base import Layer
from layerbridge.engines.classic import photo, tuning
from layerbridge.engines.classic.background import Background
from layerbridge.engines.classic.box import Box
from layerbridge.engines.classic.decompose import (
    STAGES,
    fill,
    find_background,
    find_regions,
    find_text,
    input_alpha,
    merge_elements,
    order_elements,
    peel,
    run_stages,
)
from layerbridge.engines.classic.ghosts import give_back_ghosts
from layerbridge.engines.classic.regions import Element
from layerbridge.engines.classic.scene import Piece, Scene
from layerbridge.engines.classic.tuning import TUNING, Tuning
from layerbridge.imaging import composite

H, W = 80, 120
WHITE, BLACK, RED, BLUE = (255, 255, 255), (20, 20, 20), (220, 30, 30), (30, 60, 200)


def _canvas(color: tuple[int, int, int] = WHITE) -> np.ndarray:
    out = np.zeros((H, W, 4), np.uint8)
    out[..., :3] = color
    out[..., 3] = 255
    return out


def _paint(image: np.ndarray, box: Box, color: tuple[int, int, int]) -> None:
    image[box.slices + (slice(0, 3),)] = color


def _analysed(image: np.ndarray, layers: int | str = "auto") -> Scene:
    """The scene after the stages that find elements (regions, background)."""
    return find_background(find_regions(Scene(image, layers)))


def _element(box: Box, color: tuple[int, int, int], mask: np.ndarray | None = None,
             kind: str = "shape") -> Element:
    shape = mask if mask is not None else np.ones((box.height, box.width), bool)
    return Element(box, shape, np.array(color, np.float64) / 255, kind)


def test_regions_and_background_find_each_shape_on_a_flat_page() -> None:
    image = _canvas()
    _paint(image, Box(10, 40, 10, 50), RED)
    _paint(image, Box(20, 70, 70, 110), BLUE)
    scene = find_regions(Scene(image))
    assert scene.components is not None and scene.components.count == 3
    scene = find_background(scene)
    assert scene.path == "design" and scene.background is not None and scene.background.ok
    boxes = sorted(e.box for e in scene.elements)
    assert boxes == [Box(10, 40, 10, 50), Box(20, 70, 70, 110)]
    assert scene.is_background is not None and scene.is_background[0, 0]
    assert not scene.is_background[25, 30]


def test_regions_take_a_one_layer_request_whole() -> None:
    scene = find_regions(Scene(_canvas(), 1))
    assert scene.path == "whole" and scene.components is None
    assert fill(scene).pieces[0].name == "image"


def test_a_transparent_surround_gets_a_colour_no_visible_pixel_is_near() -> None:
    image = _canvas()
    image[..., 3] = 0
    image[20:60, 20:100] = (255, 255, 255, 255)
    image[30:50, 30:90, :3] = BLACK
    scene = find_regions(Scene(image))
    assert scene.surround is not None and scene.rgb is not None
    visible = scene.rgb[image[..., 3] > 0]
    assert np.abs(visible - scene.surround).max(-1).min() >= 0.5


def test_the_text_stage_joins_a_lines_glyphs_into_one_text_element() -> None:
    image = _canvas()
    stems = [Box(30, 40, 10 + 10 * k, 14 + 10 * k) for k in range(6)]  # glyph-sized
    for stem in stems:
        _paint(image, stem, BLACK)
    _paint(image, Box(10, 70, 85, 115), BLUE)  # a shape beside the line stays apart
    scene = _analysed(image)
    assert len(scene.elements) == 7
    scene = find_text(scene)
    text = [e for e in scene.elements if e.kind == "text"]
    assert len(text) == 1 and len(scene.elements) == 2
    assert text[0].box == Box(30, 40, 10, 64)
    assert text[0].area == sum(s.size for s in stems)


def test_the_text_stage_leaves_a_row_of_discs_apart() -> None:
    image = _canvas()
    yy, xx = np.mgrid[:H, :W]
    for k in range(4):
        disc = (yy - 40) ** 2 + (xx - (15 + 25 * k)) ** 2 <= 8**2
        image[disc, :3] = RED
    scene = find_text(_analysed(image))
    assert len(scene.elements) == 4
    assert all(e.kind != "text" for e in scene.elements)


def test_the_text_stage_joins_a_titles_words_into_one_line() -> None:
    """A title whose words are taller than glyphs may be (8% of a 200 px page: 16 px, and
    "Happy" with its descenders is 26) came back as one layer per word and stray letters;
    it is one text line, and a square of its colour beside it stays apart."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (480, 200), WHITE)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=26)
    draw.text((20, 60), "Happy Sale Day", font=font, fill=BLACK)
    ink_rows, ink_cols = np.nonzero(np.asarray(page)[..., 0] < 250)  # the title's ink
    draw.rectangle((20, 140, 60, 180), fill=BLACK)
    image = np.concatenate([np.asarray(page), np.full((200, 480, 1), 255, np.uint8)], -1)
    scene = find_text(_analysed(image))
    boxes = sorted((e.kind, e.box) for e in scene.elements)
    assert len(boxes) == 2, boxes
    (shape, square), (text, line) = boxes
    assert (shape, text) == ("shape", "text") and square == Box(140, 181, 20, 61)
    ink = Box(int(ink_rows.min()), int(ink_rows.max()) + 1, int(ink_cols.min()),
              int(ink_cols.max()) + 1)
    assert max(abs(a - b) for a, b in zip(line, ink, strict=True)) <= 1, (line, ink)


def test_the_text_stage_joins_a_high_resolution_line_into_one_text_element() -> None:
    """A heading on a print-resolution page (2400 x 1400: 72 px capitals, a 20-point title
    at 260 dpi) was one "shape" layer per word: the tallest glyph was 64 px at any size. It
    grows with the image's short side, so the heading is one text line."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (2400, 1400), WHITE)
    draw = ImageDraw.Draw(page)
    draw.text((200, 600), "SAVE THE DATE", font=ImageFont.load_default(size=100), fill=BLACK)
    rows, cols = np.nonzero(np.asarray(page)[..., 0] < 250)
    assert 64 < rows.max() - rows.min() + 1 <= 89  # taller than the fixed cap allowed
    image = np.concatenate([np.asarray(page), np.full((1400, 2400, 1), 255, np.uint8)], -1)
    scene = find_text(_analysed(image))
    assert [e.kind for e in scene.elements] == ["text"]
    line = scene.elements[0].box
    assert line.contains(Box(int(rows.min()) + 1, int(rows.max()), int(cols.min()) + 1,
                             int(cols.max())))


def _inlaid_text_image() -> tuple[np.ndarray, Box, Box]:
    """A white page (200 x 240: glyphs are up to 8% of its height) with a dark button whose
    label is white, the page's own colour: the image, the button's box and the label's box."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (240, 200), WHITE)
    draw = ImageDraw.Draw(page)
    button = Box(70, 130, 20, 220)
    draw.rectangle((button.x0, button.y0, button.x1 - 1, button.y1 - 1), fill=BLACK)
    font = ImageFont.load_default(size=22)
    left, top, right, bottom = draw.textbbox((0, 0), "SALE NOW", font=font)
    x, y = 120 - (right - left) // 2, 100 - (bottom - top) // 2
    draw.text((x - left, y - top), "SALE NOW", font=font, fill=WHITE)
    image = np.concatenate([np.asarray(page), np.full((200, 240, 1), 255, np.uint8)], -1)
    return image, button, Box(y, y + bottom - top, x, x + right - left)


def test_background_coloured_text_in_a_shape_is_a_layer_over_it() -> None:
    # A white label on a dark button is text over the button, not holes through it to the
    # page: the button's layer is whole under the label (the designer's two layers).
    image, button, label = _inlaid_text_image()
    h, w = image.shape[:2]
    scene = _analysed(image)
    white = [e for e in scene.elements if e.color is not None and e.color.min() > 0.9]
    assert len(white) >= 3  # the label's glyphs
    assert all(button.contains(e.box) for e in white)
    pieces = run_stages(Scene(image)).pieces
    assert len(pieces) == 3
    background, shape, text = (p.full(h, w) for p in pieces)
    assert np.abs(text[label.slices][..., 3].max() - 1) < 1e-6
    glyphs = image[button.slices][..., 0] > 128
    assert (shape[button.slices][..., 3][glyphs] > 0.99).mean() > 0.9
    assert (text[..., 3] > 0).sum() < 0.6 * label.height * label.width
    assert np.abs(_over(pieces, h, w).astype(int) - image.astype(int)).max() <= 1


def test_an_icons_cut_outs_stay_holes_through_it() -> None:
    # Three discs cut out of a dark square (bullets, an icon's details) are no text line.
    image = _canvas()
    _paint(image, Box(20, 60, 20, 100), BLACK)
    yy, xx = np.mgrid[:H, :W]
    for cx in (38, 60, 82):
        image[(yy - 40) ** 2 + (xx - cx) ** 2 <= 6**2, :3] = WHITE
    scene = _analysed(image)
    assert len(scene.elements) == 1
    assert len(run_stages(Scene(image)).pieces) == 2


def _code_image(caption: bool = False) -> tuple[np.ndarray, Box]:
    """A real QR code (OpenCV's encoder, 3 px modules) on a white square on a dark page, as
    on a business card: its modules black, its quiet zone the square; with a ``caption``,
    a line of white glyphs just under the square."""
    modules = cv2.QRCodeEncoder.create().encode("https://example.org/menu")
    modules = modules[modules.min(axis=1) == 0][:, modules.min(axis=0) == 0]  # no margin
    side = 3 * modules.shape[0] + 12
    image = np.zeros((side + 32, side + 40, 4), np.uint8)
    image[..., :3], image[..., 3] = 40, 255
    code = Box(8, 8 + side, 20, 20 + side)
    _paint(image, code, WHITE)
    dark = np.kron(modules == 0, np.ones((3, 3), bool))
    image[code.y0 + 6:code.y1 - 6, code.x0 + 6:code.x1 - 6, :3][dark] = 0
    if caption:
        for k in range(6):
            _paint(image, Box(code.y1 + 4, code.y1 + 12, code.x0 + 4 + 9 * k,
                              code.x0 + 9 + 9 * k), WHITE)
    return image, code


def test_a_code_is_one_layer_with_its_quiet_zone() -> None:
    # A QR code's modules were joined into a "text" layer over its white square, a layer
    # and a depth level the designer never made; a code is one element, square and opaque.
    image, code = _code_image()
    h, w = image.shape[:2]
    scene = find_text(_analysed(image))
    inside = [e for e in scene.elements if code.contains(e.box)]
    assert len(inside) == 1 and inside[0].box == code and inside[0].kind == "code"
    pieces = run_stages(Scene(image)).pieces
    assert [p.name for p in pieces] == ["background", "QR code 1"]
    layer = pieces[1].full(h, w)
    assert (layer[code.slices][..., 3] > 0.99).all()
    assert (layer[..., 3] > 0).sum() == code.height * code.width
    assert np.abs(_over(pieces, h, w).astype(int) - image.astype(int)).max() <= 1


def test_a_caption_under_a_code_keeps_its_own_layer() -> None:
    # The address printed under a code, within its quiet zone, is text beside it.
    image, code = _code_image(caption=True)
    scene = find_text(_analysed(image))
    kinds = sorted(e.kind for e in scene.elements)
    assert kinds == ["code", "text"]
    assert next(e for e in scene.elements if e.kind == "code").box == code


def test_a_label_in_a_square_button_is_no_code() -> None:
    # A square button with a word on it keeps its label as a layer over it: a few glyphs
    # in a row are no grid of modules.
    image = _canvas()
    _paint(image, Box(10, 70, 30, 90), BLUE)
    for k in range(5):
        _paint(image, Box(36, 44, 36 + 10 * k, 41 + 10 * k), WHITE)
    scene = find_text(_analysed(image))
    assert len([e for e in scene.elements if e.kind == "text"]) == 1


def test_a_frames_soft_inner_edge_goes_with_the_frame() -> None:
    # An upscaled frame (a document outline, 12 px thick) has inner edges 6 px soft: a
    # ramp from its red to the page it encloses. The ramp came out as a "text" layer over
    # the frame (a layer, and a depth level, the designer never made).
    image = _canvas()
    red = np.array([227, 5, 18])
    _paint(image, Box(8, 72, 20, 100), tuple(red))
    _paint(image, Box(20, 60, 32, 88), WHITE)
    for k, t in enumerate((0.85, 0.7, 0.55, 0.4, 0.25, 0.1)):  # the inner edge, 6 px
        ramp = np.rint(red * t + 255 * (1 - t)).astype(np.uint8)
        image[20:60, 32 + k, :3] = ramp
        image[20:60, 87 - k, :3] = ramp
        image[20 + k, 32 + k:88 - k, :3] = ramp
        image[59 - k, 32 + k:88 - k, :3] = ramp
    h, w = image.shape[:2]
    pieces = run_stages(Scene(image)).pieces
    assert [p.name for p in pieces] == ["background", "Shape 1 (red)"]
    assert np.abs(_over(pieces, h, w).astype(int) - image.astype(int)).max() <= 1


def test_a_shapes_border_of_a_near_shade_goes_with_it() -> None:
    # A chart's bar: a fill with a one-pixel border a few levels darker on each side, and
    # the border's own anti-aliasing. The border columns are seams too thin to be elements;
    # they are the bar's, so moving the bar leaves no outline on the page.
    image = _canvas()
    bar = Box(15, 70, 40, 60)
    _paint(image, bar, (255, 99, 132))
    for x, color in ((39, (255, 235, 239)), (40, (255, 100, 133)), (41, (255, 91, 126)),
                     (58, (255, 95, 129)), (59, (255, 85, 121)), (60, (255, 205, 216))):
        _paint(image, Box(bar.y0, bar.y1, x, x + 1), color)
    _paint(image, Box(bar.y0, bar.y0 + 1, 41, 59), (255, 91, 126))
    pieces = run_stages(Scene(image)).pieces
    assert len(pieces) == 2
    background, shape = (p.full(H, W) for p in pieces)
    assert np.abs(background[..., :3] - 1).max() < 0.05  # no outline left on the page
    assert (shape[bar.y0:bar.y1, 40:60, 3] > 0.99).all()
    assert np.abs(_over(pieces, H, W).astype(int) - image.astype(int)).max() <= 1


def test_the_text_stage_drops_a_speck_inside_a_shape_and_keeps_a_dot_alone() -> None:
    # A shade inside a white letter (an anti-aliased counter) stood as a layer over it: a
    # depth level the design does not have. A dot of the same size on its own stays.
    green, shade = (10, 110, 75), (36, 128, 94)
    image = _canvas(green)
    _paint(image, Box(10, 70, 10, 40), WHITE)
    _paint(image, Box(30, 33, 20, 24), shade)
    _paint(image, Box(30, 33, 80, 84), RED)
    scene = find_text(_analysed(image))
    assert sorted(e.box for e in scene.elements) == [Box(10, 70, 10, 40), Box(30, 33, 80, 84)]
    pieces = run_stages(Scene(image)).pieces
    assert len(pieces) == 3
    assert np.abs(_over(pieces, H, W).astype(int) - image.astype(int)).max() <= 1


def test_the_text_stage_leaves_a_panels_dither_in_the_panel() -> None:
    # A light panel dithered with darker dots: the dots are its texture, not faint strokes
    # to join to the nearest text (which then reached over the whole panel, a layer above it).
    image = _canvas()
    for k in range(6):
        _paint(image, Box(10, 20, 10 + 10 * k, 14 + 10 * k), BLACK)
    panel = Box(40, 80, 0, 120)
    _paint(image, panel, (245, 245, 245))
    image[41:79:3, 1:119:3, :3] = 180
    scene = find_text(_analysed(image))
    boxes = sorted(e.box for e in scene.elements)
    assert boxes == [Box(10, 20, 10, 64), panel]
    shape = next(e for e in scene.elements if e.box == panel)
    assert shape.mask.all()
    pieces = run_stages(Scene(image)).pieces
    assert len(pieces) == 3
    assert np.abs(_over(pieces, H, W).astype(int) - image.astype(int)).max() <= 1


def test_the_text_stage_gives_an_unfitted_gradient_back_to_the_background() -> None:
    # A background gradient steeper than the field's quadratic leaves parts of itself at the
    # image's edges that the field does not explain: they run on into the background with no
    # edge, so they are background, not layers. A shape at the edge keeps its layer.
    image = _canvas()
    ramp = 50 * (np.arange(W) / (W - 1)) ** 6
    image[..., 0] = np.rint(235 - ramp)[None, :]
    image[..., 1] = np.rint(240 - 0.6 * ramp)[None, :]
    image[..., 2] = 250
    _paint(image, Box(20, 50, 10, 40), RED)
    _paint(image, Box(60, 70, 0, 20), BLUE)
    scene = _analysed(image)
    assert any(e.box.x1 == W for e in scene.elements)  # the gradient's steep end
    scene = find_text(scene)
    assert sorted(e.box for e in scene.elements) == [Box(20, 50, 10, 40), Box(60, 70, 0, 20)]
    pieces = run_stages(Scene(image)).pieces
    assert len(pieces) == 3
    assert np.abs(_over(pieces, H, W).astype(int) - image.astype(int)).max() <= 1


def test_the_order_stage_puts_an_element_that_covers_another_above_it() -> None:
    under_box, over_box = Box(10, 70, 10, 100), Box(30, 50, 40, 70)
    hole = np.ones((under_box.height, under_box.width), bool)
    hole[over_box.within(under_box)] = False
    under = _element(under_box, BLUE, hole)
    over = _element(over_box, RED)
    for given in ([over, under], [under, over]):
        scene = Scene(_canvas(), elements=list(given))
        assert order_elements(scene).elements == [under, over]


def test_the_order_stage_puts_text_above_the_shape_it_lies_on() -> None:
    panel_box, text_box = Box(10, 70, 10, 110), Box(30, 40, 20, 60)
    panel_mask = np.ones((panel_box.height, panel_box.width), bool)
    panel_mask[text_box.within(panel_box)] = False
    panel, text = _element(panel_box, BLUE, panel_mask), _element(text_box, WHITE, kind="text")
    scene = order_elements(Scene(_canvas(), elements=[text, panel]))
    assert scene.elements == [panel, text]


def _prohibition_sign() -> tuple[np.ndarray, np.ndarray, np.ndarray, Box]:
    """(image, sign, pictogram, the pictogram's box): a red ring and diagonal bar over a
    dark plus on a white page; the bar cuts the plus in two (full-frame masks, the
    pictogram's as seen)."""
    size = 160
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - 80, xx - 80)
    bar = np.abs(yy - xx) <= 8  # the diagonal through the centre
    sign = ((radius >= 58) & (radius <= 66)) | (bar & (radius <= 62))
    plus = ((np.abs(yy - 80) <= 4) & (np.abs(xx - 80) <= 40)) | (
        (np.abs(xx - 80) <= 4) & (np.abs(yy - 80) <= 40))
    image = np.full((size, size, 4), 255, np.uint8)
    image[plus, :3] = BLACK
    image[sign, :3] = RED
    return image, sign, plus & ~sign, Box(40, 121, 40, 121)


def test_the_order_stage_puts_a_sign_above_the_pictogram_its_bar_crosses() -> None:
    """The pictogram lies in the ring's hole, where the page shows, so the ring's hull
    hides nothing of it; the bar cuts it, and it is the lower one."""
    image, sign, pictogram, box = _prohibition_sign()
    sign_element = _element(Box(0, 160, 0, 160), RED, sign)
    pictogram_element = _element(box, BLACK, pictogram[box.slices])
    for given in ([sign_element, pictogram_element], [pictogram_element, sign_element]):
        scene = Scene(image, elements=list(given))
        scene.is_background = ~(sign | pictogram)
        assert order_elements(scene).elements == [pictogram_element, sign_element]


def test_the_peel_takes_a_pictogram_on_under_the_bar_that_crosses_it() -> None:
    """The plus goes on under the sign's bar where it lies on both sides of it, not where
    the page lies beside the bar inside the plus's hull."""
    image, sign, pictogram, box = _prohibition_sign()
    scene = _analysed(image)
    scene.elements = [_element(box, BLACK, pictogram[box.slices]),
                      _element(Box(0, 160, 0, 160), RED, sign)]
    layer = peel(scene).pieces[0]
    alpha = layer.full(160, 160)[..., 3]
    yy, xx = np.mgrid[:160, :160]
    crossing = sign & (np.abs(yy - 80) <= 4) & (np.abs(xx - 80) <= 4)  # under both arms
    beside = sign & (np.abs(yy - xx) <= 3) & (np.abs(yy - 80) >= 20) & (np.hypot(
        yy - 80, xx - 80) <= 40)  # the bar between the arms: the page on both sides
    assert (alpha[crossing] == 1).all()
    assert (alpha[beside] == 0).all()


def test_the_merge_stage_joins_the_most_alike_to_the_count_asked() -> None:
    red_a, red_b = _element(Box(10, 20, 10, 30), RED), _element(Box(10, 20, 34, 54), RED)
    blue = _element(Box(50, 75, 60, 110), BLUE)
    scene = merge_elements(Scene(_canvas(), 3, elements=[red_a, blue, red_b]))
    assert len(scene.elements) == 2
    reds = [e for e in scene.elements if e.box == Box(10, 20, 10, 54)]
    assert len(reds) == 1 and reds[0].area == red_a.area + red_b.area
    assert blue in scene.elements


def test_the_merge_stage_unasked_keeps_apart_what_is_unlike() -> None:
    red, blue = _element(Box(10, 20, 10, 30), RED), _element(Box(50, 75, 60, 110), BLUE)
    green = _element(Box(40, 60, 5, 25), (40, 180, 60))
    scene = merge_elements(Scene(_canvas(), elements=[red, blue, green]))
    assert scene.elements == [red, blue, green]


def _over(pieces, height: int, width: int) -> np.ndarray:
    layers = [Layer(p.name, np.clip(np.rint(p.full(height, width) * 255), 0, 255)
                    .astype(np.uint8)) for p in pieces]
    return composite(layers, width, height)


def test_the_peeled_layers_over_composite_to_the_input() -> None:
    image = _canvas((240, 236, 220))
    yy, xx = np.mgrid[:H, :W]
    # A soft-edged disc on a rectangle: anti-aliased mixes of the two colours.
    _paint(image, Box(15, 65, 15, 70), BLUE)
    edge = np.clip(15.5 - np.hypot(yy - 40, xx - 42), 0, 1)[..., None]
    image[..., :3] = np.rint(edge * RED + (1 - edge) * image[..., :3]).astype(np.uint8)
    scene = order_elements(find_text(_analysed(image)))
    assert len(scene.elements) == 2
    scene = peel(merge_elements(scene))
    assert len(scene.pieces) == 2 and scene.plate is not None
    assert np.abs(scene.plate[40, 40] - np.array([240, 236, 220]) / 255).max() < 2 / 255
    scene = input_alpha(fill(scene))
    assert [p.name for p in scene.pieces][0] == "background"
    out = _over(scene.pieces, H, W)
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1


def test_the_peel_fills_a_photo_under_a_shape_from_the_photos_own_pixels() -> None:
    """A shape over a photo near its edge: the photo goes on under it, filled from the
    photo, not from the page beside it nor the page showing through a gap in it. (The page
    here is red; a transparent surround's key colour, red too in one badge, showed in its
    photo layer as a red hexagon.)"""
    image = _canvas(RED)
    photo_box = Box(0, H, 0, 60)
    grain = np.random.default_rng(0).normal(BLUE, 8, (H, 60, 3))
    image[photo_box.slices + (slice(0, 3),)] = np.clip(grain, 0, 255)
    _paint(image, Box(0, H, 44, 46), RED)  # a gap its mask holds
    yy, xx = np.mgrid[:H, :W]
    disc = np.hypot(yy - 40, xx - 53) <= 6
    image[disc, :3] = (240, 200, 20)
    scene = _analysed(image)
    disc_box = Box(34, 47, 47, 60)
    scene.elements = [
        Element(photo_box, np.ones((H, 60), bool), None, "photo"),
        _element(disc_box, (240, 200, 20), disc[disc_box.slices]),
    ]
    photo_layer = peel(scene).pieces[0]
    under = photo_layer.pixels[disc[photo_layer.box.slices]]
    assert (under[:, 3] == 1).all()  # the photo goes on under the disc
    # Its colour there is the photo's (red 30 and grain of 8), nowhere the page's red (220).
    assert under[:, 0].max() * 255 <= 30 + 4 * 8


def test_the_peel_takes_a_photo_on_whole_under_a_shape_on_it() -> None:
    """A photo goes on under what lies on it, as a flat shape does: its layer covers the
    hole, and nothing of it is left in the background there (the photo's colours stayed on
    the page in the shape's outline, left behind when the photo moved)."""
    image = _canvas(WHITE)
    photo_box = Box(10, 70, 10, 70)
    grain = np.random.default_rng(0).normal(BLUE, 8, (60, 60, 3))
    image[photo_box.slices + (slice(0, 3),)] = np.clip(grain, 0, 255)
    yy, xx = np.mgrid[:H, :W]
    disc = np.hypot(yy - 40, xx - 40) <= 8
    image[disc, :3] = RED
    scene = _analysed(image)
    disc_box = Box(32, 49, 32, 49)
    scene.elements = [
        Element(photo_box, ~disc[photo_box.slices], None, "photo"),
        _element(disc_box, RED, disc[disc_box.slices]),
    ]
    scene = peel(scene)
    photo_layer = scene.pieces[0]
    assert (photo_layer.pixels[disc[photo_layer.box.slices]][:, 3] == 1).all()
    assert scene.plate is not None
    assert np.abs(scene.plate[disc] - np.array(WHITE) / 255).max() <= 2 / 255


def test_the_peel_keeps_thin_texts_strokes_as_part_opaque_as_drawn() -> None:
    """Small text's strokes are thinner than a pixel in places: many of its pixels are mixes
    of the ink and the page, yet they are the text's own component. Those mixes are part
    opaque ink, not opaque pixels of a lighter shade (which made the text's layer about a
    sixth too opaque and greyed its colour)."""
    from PIL import Image, ImageDraw, ImageFont

    coverage = Image.new("L", (240, 120), 0)
    draw = ImageDraw.Draw(coverage)
    font = ImageFont.load_default(size=13)
    draw.text((12, 20), "Thin strokes never reach", font=font, fill=255)
    draw.text((12, 60), "the ink of their text.", font=font, fill=255)
    alpha = np.asarray(coverage) / 255.0
    ink = np.array([30, 30, 120], np.float64)
    rgb = np.rint(255 * (1 - alpha[..., None]) + ink * alpha[..., None]).astype(np.uint8)
    image = np.concatenate([rgb, np.full((120, 240, 1), 255, np.uint8)], -1)
    scene = input_alpha(fill(peel(merge_elements(order_elements(find_text(_analysed(image)))))))
    text = [p.full(120, 240) for p in scene.pieces[1:]]
    assert text and all(p.name.startswith("Text") for p in scene.pieces[1:])
    lifted = np.max([layer[..., 3] for layer in text], 0)
    iou = np.minimum(lifted, alpha).sum() / np.maximum(lifted, alpha).sum()
    assert iou >= 0.97, iou
    opaque = np.concatenate([layer[..., :3][layer[..., 3] > 0.5] for layer in text])
    assert np.abs(opaque * 255 - ink).max(-1).mean() <= 3
    assert np.abs(_over(scene.pieces, 120, 240).astype(int) - image.astype(int)).max() <= 1


def test_the_peel_gives_a_block_of_many_inks_its_glyphs_anti_aliased_rims() -> None:
    """A block of the blocks path (a paragraph whose words are in two inks: one element of
    no single colour) holds its glyphs' rims, mixes of each ink and the page. Each rim pixel
    is its nearest inner pixel's ink laid part opaque over the page, not an opaque pixel of
    a lighter shade."""
    from PIL import Image, ImageDraw, ImageFont

    coverage = Image.new("L", (240, 120), 0)
    draw = ImageDraw.Draw(coverage)
    font = ImageFont.load_default(size=20)
    for row, words in enumerate(("Two inks in", "one block", "of words")):
        draw.text((12, 10 + 34 * row), words, font=font, fill=255, stroke_width=1,
                  stroke_fill=255)
    alpha = np.asarray(coverage) / 255.0
    ink = np.where(np.arange(240)[None, :, None] < 110, [[[30, 30, 90]]], [[[170, 40, 30]]])
    rgb = np.rint(255 * (1 - alpha[..., None]) + ink * alpha[..., None]).astype(np.uint8)
    image = np.concatenate([rgb, np.full((120, 240, 1), 255, np.uint8)], -1)
    scene = _analysed(image)
    box = Box(0, 120, 0, 240)
    scene.elements = [Element(box, alpha > 0, None, "group", [0])]
    scene = input_alpha(fill(peel(scene)))
    lifted = scene.pieces[1].full(120, 240)[..., 3]
    iou = np.minimum(lifted, alpha).sum() / np.maximum(lifted, alpha).sum()
    assert iou >= 0.97, iou
    assert np.abs(_over(scene.pieces, 120, 240).astype(int) - image.astype(int)).max() <= 1


def test_the_peel_keeps_the_inside_of_text_in_a_soft_gradient_opaque() -> None:
    """A title's ink may run through a few shades (a soft gradient, one flat element): its
    pixels away from the glyphs' edges are no mixes with the page, however far their shade
    is from the mean, and stay opaque; only the rim, where a glyph meets the page, is
    anti-aliased."""
    from PIL import Image, ImageDraw, ImageFont

    coverage = Image.new("L", (360, 400), 0)
    font = ImageFont.load_default(size=30)
    ImageDraw.Draw(coverage).text((10, 180), "SOFT INK", font=font, fill=255, stroke_width=2,
                                  stroke_fill=255)
    alpha = np.asarray(coverage) / 255.0
    # 30 levels from the glyphs' top to their foot.
    shade = np.clip((np.arange(400) - 183) / 30, 0, 1)[:, None, None]
    ink = (1 - shade) * np.array([140, 20, 30]) + shade * np.array([170, 50, 60])
    rgb = np.rint(255 * (1 - alpha[..., None]) + ink * alpha[..., None]).astype(np.uint8)
    image = np.concatenate([rgb, np.full((400, 360, 1), 255, np.uint8)], -1)
    scene = input_alpha(fill(peel(merge_elements(order_elements(find_text(_analysed(image)))))))
    assert [p.name for p in scene.pieces] == ["background", "Text 1 (red)"]
    lifted = scene.pieces[1].full(400, 360)[..., 3]
    inside = ndimage.binary_erosion(alpha == 1.0, np.ones((3, 3), bool))
    assert inside.sum() > 1000 and (lifted[inside] == 1.0).mean() == 1.0
    assert np.abs(_over(scene.pieces, 400, 360).astype(int) - image.astype(int)).max() <= 1


def test_the_loop_reports_each_stage_in_order_and_stops_at_a_cancel() -> None:
    image = _canvas()
    _paint(image, Box(10, 40, 10, 50), RED)
    seen: list[tuple[float, str]] = []
    pieces = run_stages(Scene(image), lambda f, s: seen.append((f, s))).pieces
    assert len(pieces) == 2
    starts = [s for _, s in seen]
    assert [s.name for s in STAGES] == list(dict.fromkeys(starts))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and fractions[-1] < 1.0

    class Cancelled(Exception):
        pass

    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise Cancelled

    reached: list[str] = []
    with pytest.raises(Cancelled):
        run_stages(Scene(image), lambda f, s: reached.append(s), check)
    assert reached == ["regions", "background"]


def test_the_seams_stage_gives_an_elements_edge_left_in_the_background_back_to_it() -> None:
    page = np.array([240, 236, 220]) / 255
    base = np.concatenate([np.broadcast_to(page, (H, W, 3)), np.ones((H, W, 1))], -1)
    # A blue square's outer rim, a mix the peel did not take, was left in the plate; a
    # speck far from every layer is the page's own.
    rim = np.zeros((H, W), bool)
    rim[18:42, 28:62] = True
    rim[20:40, 30:60] = False
    base[rim, :3] = np.rint((0.5 * page + 0.5 * np.array(BLUE) / 255) * 255) / 255
    base[70, 110, :3] = 0.0
    square = np.zeros((20, 30, 4))
    square[..., :3], square[..., 3] = np.array(BLUE) / 255, 1.0
    pieces = [Piece("background", Box(0, H, 0, W), base.copy()),
              Piece("Shape 1", Box(20, 40, 30, 60), square)]
    before = _over(pieces, H, W)
    field = Background(np.vstack([page, np.zeros((5, 3))]), 1.0, W, H)
    give_back_ghosts(pieces, field, np.ones((H, W), bool))
    assert np.abs(_over(pieces, H, W).astype(int) - before.astype(int)).max() <= 1
    shape = pieces[1].full(H, W)
    assert (shape[..., 3][rim] > 0).all() and pieces[1].box == Box(18, 42, 28, 62)
    assert np.abs(pieces[0].pixels[rim, :3] - page).max() <= 1 / 255
    assert (pieces[0].pixels[70, 110, :3] == 0).all() and shape[70, 110, 3] == 0


def test_matting_recovers_a_soft_edge_from_its_hard_cut() -> None:
    # A red subject fades into a blue ground over 8 pixels; the cut says only which side of
    # half-way each pixel is. The colour-line model holds exactly here, so the solve must
    # give the ramp back.
    yy, xx = np.mgrid[:60, :90]
    truth = np.clip((xx - 40.5) / 8 + 0.5, 0, 1) * np.clip((yy - 10.5) / 8 + 0.5, 0, 1)
    rgb = (truth[..., None] * np.array(RED) + (1 - truth[..., None]) * np.array(BLUE)) / 255
    alpha = photo.matte(rgb, truth >= 0.5)
    assert np.abs(alpha - truth).max() < 0.03


def test_matting_on_threads_gives_the_tiles_of_one_thread_and_stops_when_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A disc whose edge crosses many tiles, on a noisy ground: each tile writes only its own
    # part, so two threads must give the alpha of one, bit for bit.
    yy, xx = np.mgrid[:420, :420]
    disc = np.hypot(yy - 210, xx - 200) < 150
    rng = np.random.default_rng(3)
    rgb = np.where(disc[..., None], np.array(RED) / 255, np.array(BLUE) / 255)
    rgb = np.clip(rgb + rng.normal(0, 0.04, rgb.shape), 0, 1)
    alphas = []
    for threads in (1, 2):
        monkeypatch.setattr(photo, "TUNING", dataclasses.replace(TUNING, matte_threads=threads))
        alphas.append(photo.matte(rgb, disc))
    assert np.array_equal(alphas[0], alphas[1])
    assert ((alphas[1] > 0) & (alphas[1] < 1)).sum() > 0

    calls = []

    def cancel() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        photo.matte(rgb, disc, cancel)
    assert len(calls) == 2


def test_matting_a_badly_conditioned_edge_is_soft_and_prints_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Stripes across a disc's edge: an incomplete Cholesky factorisation of this system
    # fails (pymatting's prints a "PERFORMANCE WARNING" to stdout each time it retries,
    # which is why the engine solves directly). The matte must still be soft where the
    # disc's edge crosses the stripes, and print nothing on the server's console or the
    # CLI's output.
    yy, xx = np.mgrid[:96, :96]
    disc = np.hypot(yy - 48, xx - 48) < 30
    rgb = np.where(disc[..., None], 0.5, np.repeat(((xx % 4) < 2)[..., None], 3, -1) * 1.0)
    alpha = photo.matte(rgb, disc)
    assert capsys.readouterr().out == ""
    assert ((alpha > 0.05) & (alpha < 0.95)).any()


def test_every_threshold_in_tuning_is_read_by_the_engine_and_nowhere_redefined() -> None:
    engine = Path(tuning.__file__).parent
    source = "".join(p.read_text() for p in engine.glob("*.py") if p.name != "tuning.py")
    fields = [f.name for f in dataclasses.fields(Tuning)]
    assert [name for name in fields if f"TUNING.{name}" not in source] == []
    # The thresholds live in tuning.py only: no module keeps a constant of its own.
    assert not re.findall(r"^_?[A-Z][A-Z_]*(?:_TOL|_AREA|_BAND|_SHARE) = ", source, re.M)
    # Read when a stage runs: a default argument would keep the value its module loaded with.
    bound = [f"{p.name}: {node.name}" for p in engine.glob("*.py")
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
             and "TUNING" in " ".join(ast.unparse(d) for d in
                                      [*node.args.defaults, *node.args.kw_defaults] if d)]
    assert bound == []
    changed = dataclasses.replace(TUNING, same_color=0.2)
    assert changed.same_color == 0.2 and TUNING.same_color == 0.08
    with pytest.raises(dataclasses.FrozenInstanceError):
        TUNING.same_color = 0.2  # type: ignore[misc]


def test_the_background_follows_a_page_that_drifts_from_any_quadratic() -> None:
    """A page whose shade wanders a few levels in a way no quadratic field fits (here one
    and a half waves across it): all of it is background, and a panel 12 levels off the
    page and a dark shape are not. Before, the page's far swings were taken for elements,
    as halos round the real ones."""
    h, w = 160, 240
    wave = 4.0 * np.sin(np.linspace(0.0, 3.0 * np.pi, w))
    page = np.rint(225.0 + wave)[None, :, None].repeat(h, 0).repeat(3, 2)
    image = np.concatenate([page, np.full((h, w, 1), 255.0)], -1).astype(np.uint8)
    image[40:100, 30:90, :3] = (image[40:100, 30:90, :3].astype(int) + 12).astype(np.uint8)
    image[60:120, 150:210, :3] = BLACK
    scene = _analysed(image)
    assert scene.is_background is not None
    page_only = np.ones((h, w), bool)
    page_only[40:100, 30:90] = page_only[60:120, 150:210] = False
    assert scene.is_background[page_only].all(), (~scene.is_background[page_only]).sum()
    assert not scene.is_background[42:98, 32:88].any()  # the panel
    assert not scene.is_background[62:118, 152:208].any()  # the shape
    boxes = sorted(e.box for e in scene.elements)
    assert boxes == [Box(40, 100, 30, 90), Box(60, 120, 150, 210)]
