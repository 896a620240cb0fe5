"""The classic engine's design rules, each on a hand-drawn case: hidden regular polygons are
completed, faint thin strokes on a panel get their own layer, and a shape clipped to a
container joins the container's layer while one laid over its edge does not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from synthetic import spaced_capitals

from layerbridge.engines.base import Layer
from layerbridge.engines.classic.decompose import decompose
from layerbridge.imaging import composite, resize_premultiplied

DATA = Path(__file__).parent / "data"
W, H = 240, 180
_SS = 4


def _canvas(color: tuple[int, int, int]) -> np.ndarray:
    out = np.zeros((H, W, 4), np.uint8)
    out[..., :3] = color
    out[..., 3] = 255
    return out


def _drawn(color: tuple[int, int, int], draw) -> np.ndarray:
    """A layer drawn 4x supersampled and shrunk, so its edges are anti-aliased."""
    big = Image.new("RGBA", (W * _SS, H * _SS), (*color, 0))
    draw(ImageDraw.Draw(big), (*color, 255))
    return resize_premultiplied(np.asarray(big), (W, H))


def _rect(color, x0, y0, x1, y1) -> np.ndarray:
    return _drawn(color, lambda d, fill: d.rectangle(
        [x0 * _SS, y0 * _SS, x1 * _SS - 1, y1 * _SS - 1], fill=fill))


def _flat(layers: list[np.ndarray]) -> np.ndarray:
    return composite([Layer("l", layer) for layer in layers], W, H)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / np.maximum(a, b).sum())


def _layer_of(out, color) -> np.ndarray:
    """Alpha of the output layer whose opaque pixels are nearest ``color``."""
    def distance(layer: np.ndarray) -> float:
        solid = layer[..., 3] > 0.9
        if not solid.any():
            return np.inf
        return float(np.abs(layer[..., :3][solid].mean(0) - np.array(color) / 255).max())
    return min((layer for _, layer in out[1:]), key=distance)[..., 3]


def test_a_regular_pentagon_hidden_under_a_panel_comes_back_whole() -> None:
    cx, cy, r = 120, 100, 50
    corners = [(cx + r * np.cos(a), cy + r * np.sin(a))
               for a in np.linspace(0, 2 * np.pi, 6)[:-1] + 0.3]
    pentagon = _drawn((200, 40, 90), lambda d, fill: d.polygon(
        [(x * _SS, y * _SS) for x, y in corners], fill=fill))
    panel = _rect((30, 90, 200), 40, 20, 200, 95)
    out = decompose(_flat([_canvas((240, 235, 220)), pentagon, panel]))
    assert _iou(_layer_of(out, (200, 40, 90)), pentagon[..., 3] / 255) >= 0.95


def test_faint_thin_strokes_on_a_panel_are_their_own_layer() -> None:
    panel = _rect((40, 40, 40), 30, 40, 210, 140)

    def strokes(d, fill):
        for k in range(6):  # one-pixel diagonal strokes, like small glyphs: all shades
            x, y = (50 + 25 * k) * _SS, 70 * _SS
            d.line([x, y, x + 8 * _SS, y + 10 * _SS], fill=fill, width=_SS)
            d.line([x + 8 * _SS, y, x, y + 10 * _SS], fill=fill, width=_SS)
    ink = _drawn((255, 255, 255), strokes)
    out = decompose(_flat([_canvas((230, 230, 230)), panel, ink]))
    assert len(out) == 3
    assert _iou(out[2][1][..., 3], ink[..., 3] / 255) >= 0.9


def test_a_shape_clipped_to_its_container_joins_its_layer() -> None:
    card = _rect((120, 120, 250), 60, 40, 180, 150)
    corner = _rect((130, 0, 130), 60, 40, 120, 100)  # cut off exactly at the card's edge
    out = decompose(_flat([_canvas((255, 255, 255)), card, corner]))
    assert len(out) == 2
    assert _iou(out[1][1][..., 3], card[..., 3] / 255) >= 0.97


def test_a_shape_laid_over_a_container_edge_stays_apart() -> None:
    card = _rect((120, 120, 250), 60, 40, 180, 150)
    sticker = _rect((130, 0, 130), 40, 20, 100, 80)  # runs past the card's corner
    out = decompose(_flat([_canvas((255, 255, 255)), card, sticker]))
    assert len(out) == 3


def test_a_row_of_translucent_discs_is_no_text_but_veils() -> None:
    footer = _rect((82, 83, 84), 0, 90, W, H)

    def discs(d, fill):
        for k in range(4):  # a row of social-media buttons
            x = (60 + 20 * k) * _SS  # glyph-sized, spaced like letters
            d.ellipse([x, 120 * _SS, x + 12 * _SS, 132 * _SS], fill=fill)
    buttons = _drawn((255, 255, 255), discs)
    buttons[..., 3] = np.rint(buttons[..., 3] * 0.4).astype(np.uint8)
    out = decompose(_flat([_canvas((247, 247, 247)), footer, buttons]))
    upper = sum(layer[..., 3] for _, layer in out[2:])
    assert len(out) == 6
    assert _iou(upper, buttons[..., 3] / 255) >= 0.9


def test_hairline_glyph_parts_on_the_background_join_their_text() -> None:
    def glyphs(d, fill):
        for k in range(5):  # a stem each, and a hairline no pixel of which is fully inked
            x = (40 + 20 * k) * _SS
            d.rectangle([x, 60 * _SS, x + 3 * _SS - 1, 74 * _SS - 1], fill=fill)
            d.line([x + 5 * _SS, 60 * _SS + 2, x + 14 * _SS, 74 * _SS - 2], fill=fill,
                   width=_SS // 2)
    text = _drawn((30, 60, 160), glyphs)
    out = decompose(_flat([_canvas((245, 240, 230)), text]))
    assert len(out) == 2
    assert _iou(out[1][1][..., 3], text[..., 3] / 255) >= 0.9


def test_an_icon_drawn_in_hairlines_is_a_layer_not_left_on_the_page() -> None:
    # An envelope outlined in one-pixel lines: every piece is too thin or too small to be
    # an element, yet together they are an icon someone will want to move.
    def envelope(d, fill):
        x0, y0, x1, y1 = (v * _SS for v in (60, 50, 160, 110))
        d.rectangle([x0, y0, x1, y1], outline=fill, width=_SS)
        d.line([x0, y0, (x0 + x1) // 2, (y0 + y1) // 2, x1, y0], fill=fill, width=_SS)
    icon = _drawn((40, 40, 40), envelope)
    out = decompose(_flat([_canvas((255, 255, 255)), icon]))
    assert len(out) == 2
    assert _iou(out[1][1][..., 3], icon[..., 3] / 255) >= 0.8
    assert np.abs(out[0][1][..., :3] - 1.0).max() <= 0.05  # the page is clean


def test_a_disc_cut_in_two_by_a_band_across_it_stays_one_layer() -> None:
    disc = _drawn((220, 120, 20), lambda d, fill: d.ellipse(
        [70 * _SS, 40 * _SS, 170 * _SS, 140 * _SS], fill=fill))
    band = _rect((40, 40, 90), 20, 80, 220, 100)
    out = decompose(_flat([_canvas((250, 250, 250)), disc, band]))
    assert len(out) == 3
    assert _iou(_layer_of(out, (220, 120, 20)), disc[..., 3] / 255) >= 0.95


def test_an_ellipse_overlapping_a_panel_edge_a_little_lies_above_it() -> None:
    panel = _rect((170, 70, 20), 100, 100, 220, 160)
    ellipse = _drawn((20, 10, 50), lambda d, fill: d.ellipse(
        [20 * _SS, 40 * _SS, 160 * _SS, 108 * _SS], fill=fill))
    out = decompose(_flat([_canvas((30, 200, 140)), panel, ellipse]))
    assert len(out) == 3
    assert _iou(out[2][1][..., 3], ellipse[..., 3] / 255) >= 0.95
    assert _iou(out[1][1][..., 3], panel[..., 3] / 255) >= 0.95


def _grainy_photo(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """A photo placed in the design: smooth colour with grain, every pixel a little off."""
    rng = np.random.default_rng(3)
    out = np.zeros((H, W, 4), np.uint8)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    base = np.stack([60 + xs - x0, 120 + (ys - y0) // 2, 180 - (xs - x0) // 2], -1)
    out[y0:y1, x0:x1, :3] = np.clip(base + rng.normal(0, 6, base.shape), 0, 255)
    out[y0:y1, x0:x1, 3] = 255
    return out


def test_a_photo_placed_in_a_design_is_one_layer_and_the_shape_beside_it_another() -> None:
    photo = _grainy_photo(20, 30, 120, 150)
    panel = _rect((30, 90, 200), 150, 40, 220, 140)
    out = decompose(_flat([_canvas((250, 250, 250)), photo, panel]))
    assert _iou(_the_photo(out), photo[..., 3] / 255.0) >= 0.95
    assert _iou(_layer_of(out, (30, 90, 200)), panel[..., 3] / 255.0) >= 0.9


def _the_photo(out) -> np.ndarray:
    """Alpha of the one photo layer in ``out``."""
    photos = [layer for name, layer in out if name.startswith("Photo")]
    assert len(photos) == 1, [name for name, _ in out]
    return photos[0][..., 3]


def test_a_photo_on_a_panel_is_one_layer_over_the_panel() -> None:
    # A product shot on a white card: the card and the photo are one part of the
    # foreground, mostly flat, so the photo is found as its own dense cluster of specks.
    photo = _grainy_photo(90, 50, 150, 120)
    disc = _drawn((0, 0, 0), lambda d, fill: d.ellipse(
        [90 * _SS, 50 * _SS, 150 * _SS - 1, 120 * _SS - 1], fill=fill))
    photo[..., 3] = disc[..., 3]
    card = _rect((255, 255, 255), 20, 15, 220, 165)
    out = decompose(_flat([_canvas((240, 110, 120)), card, photo]))
    assert _iou(_the_photo(out), photo[..., 3] / 255.0) >= 0.95
    assert _iou(_layer_of(out, (255, 255, 255)), card[..., 3] / 255.0) >= 0.9
    # Nothing of the photo is left on the page under it.
    page = out[0][1][..., :3][50:120, 90:150]
    assert np.abs(page - np.array([240, 110, 120]) / 255).max() <= 0.02


def test_photo_regions_leave_flat_text_and_shapes_alone() -> None:
    from layerbridge.engines.classic.background import background_mask, fit_background
    from layerbridge.engines.classic.photo import photo_regions
    from layerbridge.engines.classic.regions import link_components

    panel = _rect((30, 90, 200), 150, 40, 220, 140)
    ink = _drawn((20, 20, 20), lambda d, fill: d.text((40 * _SS, 60 * _SS), "Sale today",
                                                      fill=fill, font_size=14 * _SS))
    rgb8 = _flat([_canvas((250, 250, 250)), panel, ink])[..., :3].copy()
    rgb = rgb8 / 255.0
    bg = fit_background(rgb, np.ones((H, W), bool), np.random.default_rng(0))
    is_bg = background_mask(rgb, bg)
    in_photo, photos = photo_regions(link_components(rgb8, is_bg), is_bg)
    assert photos == [] and not in_photo.any()


def test_the_background_field_is_its_quadratic_plus_drift_over_boxes_and_points() -> None:
    # The field is evaluated per row and per column (fast); it must be the fitted quadratic
    # of the six basis terms plus the drift of the pixel's cell, whether asked over a box
    # or at scattered pixels, and the two must agree exactly (one pixel, one colour).
    from layerbridge.engines.classic.background import Background, _basis

    rng = np.random.default_rng(3)
    h, w, cell = 37, 53, 8
    coef = rng.uniform(-0.3, 0.3, (6, 3)) + np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])[:, None]
    drift = rng.uniform(-0.02, 0.02, (h // cell, w // cell, 3))
    field = Background(coef, 1.0, w, h, drift, cell)
    ys, xs = np.mgrid[:h, :w]
    rows = np.minimum(ys // cell, drift.shape[0] - 1)
    cols = np.minimum(xs // cell, drift.shape[1] - 1)
    expected = np.clip(_basis(ys, xs, w, h) @ coef + drift[rows, cols], 0.0, 1.0)
    whole = field.render_box(0, h, 0, w)
    assert whole.shape == (h, w, 3)
    assert np.abs(whole - expected).max() <= 1e-12
    assert np.array_equal(field.render_box(5, 30, 11, 40), whole[5:30, 11:40])
    py, px = rng.integers(0, h, 200), rng.integers(0, w, 200)
    assert np.array_equal(field.render(py, px), whole[py, px])


def test_the_background_fit_recovers_its_quadratic_even_from_a_seed_of_one_row() -> None:
    # A page shaded by a known quadratic: the fit must give its six terms back. A seed of
    # one row cannot tell the terms along the rows from the constant (a singular system):
    # the fit must still be finite and explain that row.
    from layerbridge.engines.classic.background import Background, _basis, fit_background

    h, w = 90, 140
    coef = np.array([[0.6, 0.5, 0.4], [0.1, -0.05, 0.0], [-0.08, 0.02, 0.1],
                     [0.05, 0.0, -0.04], [0.03, 0.06, 0.0], [-0.02, 0.04, 0.05]])
    ys, xs = np.mgrid[:h, :w]
    rgb = _basis(ys, xs, w, h) @ coef
    field = fit_background(rgb, np.ones((h, w), bool), np.random.default_rng(0))
    assert np.abs(field.coef - coef).max() < 1e-9 and field.inliers == 1.0

    row = np.zeros((h, w), bool)
    row[40] = True
    thin = fit_background(rgb, row, np.random.default_rng(0))
    assert np.isfinite(thin.coef).all()
    plain = Background(thin.coef, thin.inliers, w, h)
    assert np.abs(plain.render_box(40, 41, 0, w)[0] - rgb[40]).max() < 1e-6


def test_a_dither_on_a_card_is_no_photo() -> None:
    # A checkerboard dither of one ink: every pixel a speck, packed as densely as a photo's,
    # but of two colours, not a photo's many.
    from layerbridge.engines.classic.background import background_mask, fit_background
    from layerbridge.engines.classic.photo import photo_regions
    from layerbridge.engines.classic.regions import link_components

    card = _rect((255, 255, 255), 20, 15, 220, 165)
    dither = np.zeros((H, W, 4), np.uint8)
    dither[..., :3] = (20, 60, 160)
    ys, xs = np.mgrid[:H, :W]
    dither[50:110, 90:150, 3] = 255 * ((ys + xs) % 2 == 0)[50:110, 90:150]
    rgb8 = _flat([_canvas((240, 110, 120)), card, dither])[..., :3].copy()
    rgb = rgb8 / 255.0
    page = np.zeros((H, W), bool)
    page[:10], page[-10:] = True, True
    is_bg = background_mask(rgb, fit_background(rgb, page, np.random.default_rng(0)))
    in_photo, photos = photo_regions(link_components(rgb8, is_bg), is_bg)
    assert photos == [] and not in_photo.any()


def test_specks_of_a_lighter_shade_inside_a_line_of_text_join_it() -> None:
    # Thin glyphs of small text never reach the ink's colour: they come out as specks of a
    # lighter shade between the glyphs that do, and a speck is never a layer of its own.
    image = _canvas((245, 245, 245))
    for k in range(8):
        x = 40 + 10 * k
        image[60:74, x : x + 6, :3] = 0
    for x in (47, 67, 97):
        image[66:70, x : x + 3, :3] = 90
    out = decompose(image)
    assert len(out) == 2
    text = out[1][1][..., 3]
    assert text[60:74, 40:120].sum() >= 0.95 * (image[60:74, 40:120, 0] < 128).sum()


def test_a_design_of_hundreds_of_glyphs_comes_back_in_blocks() -> None:
    # Three paragraphs of 180 small glyphs each: too many elements to take one by one, and
    # no photo: each paragraph is one layer, not the whole image one layer.
    h, w = 500, 800
    image = np.full((h, w, 4), 255, np.uint8)
    corners = [(30, 30), (300, 40), (120, 450)]
    for y0, x0 in corners:
        for line in range(6):
            for k in range(30):
                y, x = y0 + 8 * line, x0 + 5 * k
                image[y : y + 5, x : x + 3, :3] = 20
    out = decompose(image)
    assert len(out) >= 4
    for y0, x0 in corners:
        ink = image[y0 : y0 + 48, x0 : x0 + 150, 0] < 128
        best = max(layer[y0 : y0 + 48, x0 : x0 + 150, 3][ink].sum() for _, layer in out[1:])
        assert best >= 0.9 * ink.sum()


def test_the_counters_of_glyphs_taken_in_blocks_show_the_page() -> None:
    # Paragraphs of hundreds of "o"s (rings of ink round a hole of the page): taken in
    # blocks, each paragraph a layer whose glyphs keep their holes. Before, a block was
    # filled in like a photo, and every counter was a patch of opaque page in the layer.
    h, w = 400, 640
    image = np.full((h, w, 4), 255, np.uint8)
    counters = []
    for y0, x0 in ((30, 30), (220, 330)):
        for line in range(8):
            for k in range(36):
                y, x = y0 + 12 * line, x0 + 8 * k
                image[y : y + 7, x : x + 6, :3] = 20
                image[y + 2 : y + 5, x + 2 : x + 4, :3] = 255
                counters.append((y + 3, x + 2))
    out = decompose(image)
    assert len(out) >= 3
    top = np.max([layer[..., 3] for _, layer in out[1:]], axis=0)
    assert max(top[y, x] for y, x in counters) <= 0.05
    ink = image[..., 0] < 128
    assert top[ink].min() >= 0.9


def test_a_line_of_text_does_not_go_on_under_a_word_within_it() -> None:
    # Black glyphs far apart, a small red word in the gap between two of them: the black
    # line's layer must not be filled in black where the red word is (its hull is no shape).
    image = _canvas((245, 245, 245))
    for x in (40, 64, 88, 112):
        image[60:72, x : x + 6, :3] = 0
    for x in (49, 56):
        image[62:70, x : x + 4, :3] = (220, 20, 20)
    out = decompose(image)
    assert len(out) == 3
    black = _layer_of(out, (0, 0, 0))
    assert black[62:70, 49:60].max() <= 0.05


def test_a_frame_does_not_go_on_under_what_lies_in_its_hole() -> None:
    # A square frame with a disc in its hole: the page shows between them, so the frame's
    # layer stays a frame (it used to be filled in under the disc, as if it were a panel).
    frame = _drawn((30, 60, 200), lambda d, fill: d.rectangle(
        [60 * _SS, 30 * _SS, 180 * _SS, 150 * _SS], outline=fill, width=8 * _SS))
    disc = _drawn((220, 40, 40), lambda d, fill: d.ellipse(
        [95 * _SS, 65 * _SS, 145 * _SS, 115 * _SS], fill=fill))
    out = decompose(_flat([_canvas((250, 250, 250)), frame, disc]))
    assert len(out) == 3
    assert _layer_of(out, (30, 60, 200))[80:100, 110:130].max() <= 0.05
    assert _iou(_layer_of(out, (220, 40, 40)), disc[..., 3] / 255) >= 0.95


def test_shapes_on_a_transparent_surround_come_apart_from_it() -> None:
    # Nothing is behind a logo with a transparent surround: the surround is the background
    # and each shape standing on it a layer (filled from its neighbours' colours, it had no
    # background field and the whole image became one photo layer).
    red = _rect((200, 30, 30), 10, 20, 90, 160)
    blue = _rect((30, 60, 200), 150, 20, 230, 160)
    ring = _drawn((240, 200, 20), lambda d, fill: d.ellipse(
        [95 * _SS, 60 * _SS, 145 * _SS, 110 * _SS], outline=fill, width=6 * _SS))
    out = decompose(_flat([red, blue, ring]))
    assert len(out) == 4
    assert not (out[0][1][..., 3] > 0.5).any()  # the background holds nothing
    for layer in (red, blue, ring):
        assert max(_iou(x[..., 3], layer[..., 3] / 255) for _, x in out[1:]) >= 0.9


def test_a_logo_on_a_transparent_surround_leaves_nothing_under_its_edge() -> None:
    # An outline of another colour along a shape's edge, on a transparent surround: nothing
    # lies under it, so the shape's layer takes it opaque. (Taken as a part-opaque mix over
    # the surround's key colour, it came out in a colour not in the logo over a key-coloured
    # line in the background, which showed when the shape was moved.)
    red = _rect((200, 30, 30), 40, 40, 120, 140)
    outline = _rect((150, 160, 160), 120, 40, 121, 140)
    out = decompose(_flat([red, outline]))
    assert not (out[0][1][..., 3] > 0).any()  # the background holds nothing
    for _, layer in out[1:]:
        assert not ((layer[..., 3] > 0) & (layer[..., 3] < 1)).any()
    assert np.abs(_flat([np.rint(x * 255).astype(np.uint8) for _, x in out]).astype(int)
                  - _flat([red, outline]).astype(int)).max() <= 1


def test_stripes_laid_edge_to_edge_are_not_completed_under_each_other() -> None:
    """A band whose next band begins where it ends, no wider than it, is a tile beside it (the
    stripes of a flag, the rows of a table): its layer is its own band, not a rectangle
    running on under every band below it (a stack as deep as the bands are many)."""
    colors = [(230, 60, 40), (40, 160, 90), (40, 80, 200), (240, 200, 40)]
    bands = [_rect(c, 30, 30 + 30 * k, 210, 60 + 30 * k) for k, c in enumerate(colors)]
    out = decompose(_flat([_canvas((250, 250, 250)), *bands]))
    for color, band in zip(colors, bands, strict=True):
        assert _iou(_layer_of(out, color), band[..., 3] / 255) > 0.9


def test_the_transparent_corners_of_a_rounded_icon_are_no_layers() -> None:
    """An app icon: a white rounded square filling the canvas, its corners transparent. The
    corners are nothing, not shapes: every layer returned holds something, and the red mark
    on the icon is one of them."""
    tile = _drawn((255, 255, 255), lambda d, fill: d.rounded_rectangle(
        [0, 0, W * _SS - 1, H * _SS - 1], radius=30 * _SS, fill=fill))
    mark = _rect((220, 30, 40), 60, 60, 180, 120)
    out = decompose(_flat([tile, mark]))
    names = [name for name, layer in out if not (layer[..., 3] > 0).any()]
    assert names == [], f"empty layers: {names}"
    assert _iou(_layer_of(out, (220, 30, 40)), mark[..., 3] / 255) > 0.9
    assert len(out) == 2


def test_letter_spaced_lines_taken_in_blocks_come_back_line_by_line() -> None:
    """Hundreds of glyphs send a page to the blocks path; glyphs set apart (letter-spaced
    capitals) were each a block, and so each a layer named "Layer N". Each line is one
    text layer, of the glyphs' ink, as opaque as FreeType drew each pixel (its rims were
    opaque pixels of a lighter shade: 0.64 of the coverage)."""
    image, lines = spaced_capitals(36)
    out = decompose(image)
    assert len(out) <= len(lines) + 1, f"{len(out)} layers for {len(lines)} lines"
    page, ink = np.array([250, 246, 240], np.float64), np.array([30, 30, 90], np.float64)
    for y0, y1, x0, x1 in lines:
        crop = image[y0:y1, x0:x1, :3].astype(np.float64)
        drawn = np.abs(crop - page).max(-1) > 60
        coverage = np.clip((crop - page) @ (ink - page) / ((ink - page) @ (ink - page)), 0, 1)
        holder = max(out[1:], key=lambda named: named[1][y0:y1, x0:x1, 3][drawn].sum())
        assert holder[0].startswith("Text"), holder[0]
        alpha = holder[1][y0:y1, x0:x1, 3]
        assert np.minimum(alpha, coverage).sum() / np.maximum(alpha, coverage).sum() > 0.95
        opaque = holder[1][y0:y1, x0:x1, :3][alpha > 0.9] * 255
        assert np.abs(opaque - ink).max(-1).mean() <= 3


def test_a_grainy_full_bleed_photo_is_taken_as_a_photo_with_a_subject() -> None:
    """A photo filling the frame, its grain so fine that the largest component on the
    image's edge is a few pixels: a field fitted to those fits them, and the whole image
    came back as one photo layer over a made-up page. It is a photo: its subject (the
    white and yellow marks over it) is a layer, and the rest is the background."""
    rng = np.random.default_rng(5)
    ys, xs = np.mgrid[0:H, 0:W]
    base = np.stack([90 + 60 * np.sin(xs / 9) * np.cos(ys / 13),
                     80 + 50 * np.sin(ys / 7 + xs / 17), 70 + 40 * np.cos(xs / 5)], -1)
    photo = np.full((H, W, 4), 255, np.uint8)
    photo[..., :3] = np.clip(base + rng.normal(0, 25, base.shape), 0, 255)
    marks = [_rect((250, 250, 250), 70, 40, 170, 80), _rect((250, 220, 60), 50, 110, 190, 140)]
    out = decompose(_flat([photo, *marks]))
    assert len(out) == 2
    subject = out[1][1][..., 3]
    for mark in marks:
        covered = subject[mark[..., 3] == 255]
        assert covered.mean() > 0.9
    assert (subject > 0.5).mean() < 0.5  # the subject, not the whole photo


def test_a_title_over_a_photo_comes_back_as_text_layers_over_it() -> None:
    """A white title laid over a full-bleed photo: the photo path cut out a subject and
    left the title in it or in the background. Each line of the title is a text layer of
    its own, over the photo, and holds the title's pixels and little else."""
    rng = np.random.default_rng(7)
    h, w = 400, 480
    ys, xs = np.mgrid[0:h, 0:w]
    base = np.stack([70 + 40 * np.sin(xs / 11) * np.cos(ys / 17),
                     60 + 30 * np.sin(ys / 9 + xs / 23), 50 + 30 * np.cos(xs / 7)], -1)
    photo = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    ink = Image.new("L", (w, h), 0)
    font = ImageFont.load_default(size=36)
    for row, words in enumerate(("SUMMER MARKET", "OPEN EVERY DAY")):
        ImageDraw.Draw(ink).text((40, 90 + 70 * row), words, fill=255, font=font)
    title = np.asarray(ink).astype(np.float64) / 255
    rgb = photo * (1 - title[..., None]) + 255 * title[..., None]
    image = np.dstack([np.rint(rgb).astype(np.uint8), np.full((h, w), 255, np.uint8)])
    out = decompose(image)
    lines = [layer[..., 3] for name, layer in out if name.startswith("Text")]
    assert len(lines) == 2, [name for name, _ in out]
    found = np.maximum.reduce(lines)
    assert _iou(found, title) > 0.8
    assert out[0][0] == "background"


def test_a_page_of_small_text_on_one_card_comes_back_as_the_card_and_its_content() -> None:
    """A card of many small glyphs on a plain page is one block of the foreground: it
    came back as the page and one layer holding card and text together. The card is a
    layer of its own, whole under its content, and its lines of text are layers over it."""
    card, _ = spaced_capitals(20)  # 600 glyphs: taken in blocks
    h, w = card.shape[0] + 80, card.shape[1] + 80
    page = np.zeros((h, w, 4), np.uint8)
    page[...] = (200, 205, 212, 255)
    page[40:-40, 40:-40] = card
    out = decompose(page)
    assert len(out) >= 3, [name for name, _ in out]
    inside = np.zeros((h, w), bool)
    inside[40:-40, 40:-40] = True
    below = [layer for _, layer in out[1:] if (layer[..., 3] > 0.5)[inside].mean() > 0.95]
    assert len(below) == 1  # the card, whole under its text
    # The glyphs' pixels drawn more than half opaque (ink (30, 30, 90) over the card's
    # colour, about 220 levels apart) are more than half opaque in the layers over it.
    ink = np.abs(page[..., :3].astype(int) - card[0, 0, :3]).max(-1) > 130
    above = np.maximum.reduce([layer[..., 3] for _, layer in out[2:]])
    assert (above[ink & inside] > 0.5).mean() > 0.9
    # Its glyphs, over the card's colour, joined into lines: one text layer per line.
    assert [name[:4] for name, _ in out[2:]] == ["Text"] * 20


def test_the_bars_of_a_chart_come_back_as_one_layer_per_series() -> None:
    """Two series of bars on one baseline: each bar's neighbours are near but of another
    height, so no two of them were alike enough to merge and every bar came back alone.
    Bars of one colour and one width standing on one baseline are one series, the short
    ones (of a glyph's size) too."""
    heights = [30, 55, 42, 80, 67, 95]
    red = [_rect((220, 60, 90), 20 + 34 * k, 150 - h, 34 + 34 * k, 150)
           for k, h in enumerate(heights)]
    blue = [_rect((50, 120, 220), 36 + 34 * k, 150 - h // 3, 50 + 34 * k, 150)
            for k, h in enumerate(heights)]
    out = decompose(_flat([_canvas((250, 250, 250)), *red, *blue]))
    assert len(out) == 3, [name for name, _ in out]
    for series in (red, blue):
        truth = np.maximum.reduce([bar[..., 3] for bar in series]) / 255
        assert max(_iou(layer[..., 3], truth) for _, layer in out[1:]) > 0.95


def test_an_icons_inner_edges_are_not_left_in_the_background() -> None:
    """A real app icon (tests/data/images): a rounded square with a white magnifier and
    mountains and a long shadow. The pixels where its colours meet fit no one element's
    colour over the page, so the peel left them in the plate: the background showed the
    icon's outlines (3992 pixels off by more than 0.1). They go to the nearest layer now."""
    icon = np.asarray(Image.open(DATA / "images" / "image-searcher-icon.png").convert("RGBA"))
    out = decompose(icon)
    background = out[0][1][..., :3]
    # The page is a near-white gradient: smooth. An element's edge stands out from it.
    smooth = cv2.blur(cv2.medianBlur(np.rint(background * 255).astype(np.uint8), 21), (31, 31))
    edges = np.abs(background - smooth / 255).max(-1) > 0.1
    assert edges.sum() < 500, int(edges.sum())
    flat = composite([Layer(name, np.rint(layer * 255).astype(np.uint8)) for name, layer in out],
                     icon.shape[1], icon.shape[0])
    assert np.abs(flat.astype(int) - icon.astype(int)).max() <= 1


def test_a_sheet_of_many_badges_comes_back_a_layer_per_badge() -> None:
    """Thirty-six badges of three colours each (a disc, a square on it, a dot on that), far
    fewer components than a page of text: taken one by one they made 73 layers,
    the stack of a screenshot. A design that makes more elements than a designer keeps
    layers is taken in blocks: each badge, its parts close together, is one layer."""
    image = Image.new("RGB", (600, 600), (246, 244, 238))
    draw = ImageDraw.Draw(image)
    badges = []
    for k in range(36):
        y, x = 20 + 95 * (k // 6), 20 + 95 * (k % 6)
        hue = (40 + 6 * k, 200 - 5 * k, 90 + 3 * k)
        draw.ellipse((x, y, x + 70, y + 70), fill=hue)
        draw.rectangle((x + 20, y + 20, x + 50, y + 50), fill=(250 - 6 * k, 30, 60))
        draw.ellipse((x + 30, y + 30, x + 40, y + 40), fill=(20, 20 + 5 * k, 40))
        badges.append((y, x))
    out = decompose(np.dstack([np.asarray(image), np.full((600, 600), 255, np.uint8)]))
    assert len(out) <= 36 + 1, f"{len(out)} layers for 36 badges"
    for y, x in badges:
        alphas = [layer[y + 5 : y + 65, x + 5 : x + 65, 3] for _, layer in out[1:]]
        holder = max(alphas, key=lambda a: float(a.sum()))
        assert (holder[25:35, 25:35] > 0.9).all() and holder[30, 2] > 0.9  # dot and disc
