"""Every threshold of the classic engine, named, in one place.

The engine reads them from :data:`TUNING` when each stage runs (never as a default argument,
bound when a module loads), so an experiment may change one value in place for a while:
``scaled`` in ``benchmarks/tuning_sensitivity.py`` does, to measure how the development set's
score hangs on it. Colours are floats in [0, 1] unless a field says levels (0..255); "max
channel" means the largest difference over R, G and B.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """The engine's thresholds, stage by stage (see each field's comment)."""

    # --- regions: linked components ------------------------------------------------------
    #: Largest per-channel step (0..255 levels) between linked neighbours.
    link_tol: int = 3
    #: Components smaller than this many pixels are anti-aliasing mixes or noise.
    min_area: int = 8
    #: Components at most this many pixels wide are seams along edges (or thin strokes).
    thin_width: int = 2
    #: How far (max channel) a seam's colour may miss a blend of its neighbours' to be a mix.
    blend_tol: float = 0.04
    #: Neighbours a seam's colour is compared against (the biggest ones).
    blend_neighbours: int = 6
    #: How far (max channel) a seam's colour may be from a flat shape it runs along to be
    #: that shape's border (a line drawn a few levels darker round a chart's bar).
    border_tol: float = 0.08

    # --- background field -----------------------------------------------------------------
    #: Per-pixel distance (max over channels) under which a pixel counts as background.
    pixel_tol: float = 4.0 / 255
    #: Share of the seed the field must explain to be trusted: the seed region may have
    #: leaked into panels through soft shadows, so a majority is enough.
    min_inliers: float = 0.6
    #: The seed (the largest component touching the image's edge) must be at least this
    #: share of the image to stand for a page (the designs measured: 6% and more).
    min_seed_share: float = 0.01
    #: Pixels of the seed the field is fitted to (a random subsample: fast at any size).
    background_samples: int = 20000
    #: The page's slow drift from the quadratic field (a gradient of another shape, a
    #: scan's unevenness) is measured on the seed's pixels within this of the field; 8
    #: levels took in a shadow's edge on a page of cards (masks.psd 0.995 -> 0.689).
    drift_sample: float = 6.0 / 255
    #: ... and followed by at most this much: enough for a page a few levels off the
    #: field, never a panel's worth.
    drift_max: float = 4.0 / 255
    #: Cells across the image's short side on which the drift is measured, and the width
    #: (a share of that side) over which it is smoothed.
    drift_cells: int = 128
    drift_smooth: float = 1.0 / 12

    # --- elements -------------------------------------------------------------------------
    #: Components whose colour varies more than this (std) are textures, not flat fills.
    flat_std: float = 0.03
    #: Above this many elements (each component inside a photo counted) a design is taken in
    #: blocks of elements close together: taken one by one, the glyphs of paragraphs and the
    #: parts of screenshots came out as a stack deeper than the design's, and as one layer
    #: for the whole image (the photo path, as before) the design had no layers at all.
    max_elements: int = 400
    #: ... and so is a design of fewer, once they make more than this many elements, glyphs
    #: joined into lines (a collage of cut-outs, a card of many small parts).
    max_layers: int = 40
    #: A component at least this share background is background, not an element.
    max_background_share: float = 0.5
    #: An element reaching the image's edge whose colour steps by at most this (max channel,
    #: mean over its boundary) into the background is the rest of a background gradient
    #: the field did not fit (a shape's edge steps by far more; 0.04 took one, masks.psd).
    residue_step: float = 0.02
    #: Background-coloured parts inlaid in a solid shape (white text on a dark box, a
    #: button's label) are elements over it, not holes through it, when there are at least
    #: ``inlay_min_count`` of them, the shape is at least ``inlay_min_host`` pixels, they
    #: take at most ``inlay_max_share`` of the shape with its holes filled (a grid's cells
    #: or an outline's inside take most of it), and that filled shape is at least
    #: ``inlay_solidity`` of its convex hull (a bold glyph's counters are one or two).
    inlay_min_count: int = 3
    inlay_min_host: int = 400
    inlay_max_share: float = 0.35
    inlay_solidity: float = 0.85
    #: A QR code found by its finder patterns is one element with what lies within
    #: ``code_quiet`` of its side around it and reaches into its modules (its quiet zone, a
    #: white square under it).
    code_quiet: float = 0.25

    # --- photos ---------------------------------------------------------------------------
    #: A foreground region this share specks, at least this big and of this many
    #: components, is a photo.
    photo_specks: float = 0.2
    photo_min_area: int = 2500
    photo_min_parts: int = 40
    #: Within a mostly flat part, a cluster of specks closed over gaps this wide (pixels),
    #: this share specks and of at least this many colours (32 levels a channel) is a
    #: photo too: a photo on a card (the rim of a shape or a glyph is a few mixes).
    photo_cluster_close: int = 5
    photo_cluster_specks: float = 0.5
    photo_colors: int = 100
    #: Foreground parts closer than this share of the image's larger side are one block.
    block_gap: float = 0.006
    #: A block whose colours vary less than this (std, max channel) is one flat shape.
    block_flat: float = 0.03
    #: A design taken as one block whose largest flat component, holes filled, covers
    #: this share of it is a panel (a card): its content's blocks are layers over it.
    panel_share: float = 0.8
    #: Largest side (pixels) of the proxy GrabCut runs on: it is slow at full size.
    subject_proxy: int = 320
    #: GrabCut's rounds, each re-fitting its colour models and cutting again (3 lost a
    #: little on one photo of four; a round costs about 0.1 s on the slowest photo).
    subject_rounds: int = 4
    #: A subject covering less or more than these shares of the image is no subject.
    subject_min_share: float = 0.02
    subject_max_share: float = 0.9
    #: Text over a photo: lines of glyphs of at least photo_text_min_glyph pixels (median)
    #: whose ink differs by photo_text_contrast (max channel) from the mean of the pixels
    #: within photo_text_ring of it, and whose ring past that is not photo_text_enclosed
    #: flat components of at most photo_text_host times its area (letters, whose counters
    #: it is).
    photo_text_min_glyph: int = 100
    photo_text_contrast: float = 0.3
    photo_text_ring: int = 2
    photo_text_enclosed: float = 0.8
    photo_text_host: float = 10.0
    #: Half-width (pixels) of the band around a subject's edge that matting solves.
    matte_band: int = 6
    #: Matting tile side and the margin of context around it (pixels).
    matte_tile: int = 160
    matte_margin: int = 12
    #: Matting tiles solved at once, on threads (the server runs one classic job at a time;
    #: 2 is the smallest machine it is measured on).
    matte_threads: int = 2

    # --- text: glyphs into lines, faint strokes -------------------------------------------
    #: Colours closer than this (max channel) are "the same colour".
    same_color: float = 0.08
    #: Glyphs this many glyph heights apart still belong to one line (word spaces included).
    word_gap: float = 1.6
    #: Glyphs are at most this share of the image's height, and at most max_glyph pixels
    #: (but glyphs of min_glyph pixels are always allowed). (0.2 and 160, for the large
    #: titles of banners, lowered the development set's mean: more shapes of one colour in a
    #: row were taken for text than titles were found.)
    glyph_share: float = 0.08
    #: An element smaller than this many pixels with at least this share of the pixels
    #: around it in a bigger element is a speck of that one.
    enclosed_speck: int = 32
    enclosed_ring: float = 0.5
    max_glyph: int = 64
    #: ``max_glyph`` holds up to this short side of the image and grows with it past it.
    glyph_reference_side: int = 1000
    min_glyph: int = 12
    #: The words of a title line (see text.title_lines) are at most this share of the
    #: image's height.
    title_share: float = 0.2
    #: Glyphs of one line overlap vertically by at least this share of the smaller one.
    line_overlap: float = 0.4
    #: Glyphs of one line differ in height by at most this factor.
    line_height_ratio: float = 2.5
    #: Share of its convex hull that a blob's filled outline covers to be solid (not a glyph).
    solid: float = 0.9
    #: A solid blob (disc, square) is at least this many pixels on its short side and at
    #: most this factor wider than high or higher than wide.
    solid_min_side: int = 8
    solid_max_aspect: float = 2.0
    #: A piece up to this share of a mean glyph of a text element, within its box, is a part
    #: of it.
    speck_glyphs: float = 0.5
    #: A hole pixel at least this far (max channel) from its shape's colour carries ink.
    ink_step: float = 0.08
    #: Ink and shape colours closer than this are noise in the shape, not strokes.
    min_ink_contrast: float = 0.2
    #: How far (max channel) a shade may miss the line from shape colour to ink, at this
    #: quantile of the shades (a few may miss it more); the strongest shades, above the
    #: same quantile, say what the ink is.
    on_line: float = 0.05
    shade_quantile: float = 0.9
    #: Pixels this close to another element or the background are its anti-aliasing.
    stroke_clearance: int = 5
    #: Ink pixels this close together are one cluster (one glyph or word).
    stroke_join: int = 3
    #: A cluster whose box takes more than this share of its shape's box is the shape's
    #: texture (noise, a dither, a pattern), not a word written on it.
    stroke_max_share: float = 0.5
    #: Cosine above which two pieces' shades run in one direction: one ink.
    same_ink: float = 0.98
    #: Coverage from which a stroke pixel belongs to the stroke's mask.
    stroke_core: float = 0.4
    #: Largest share of the image one cluster of glyph remnants may cover.
    max_remnant: float = 0.05
    #: A cluster of ink on the background, near no element of its ink, this many pixels or
    #: more and all its shades one ink, is line art: an element of its own.
    line_art_min: int = 40
    #: A shape holds faint strokes only if it is at least this many times min_area.
    stroke_host_areas: int = 50

    # --- shapes whole again ---------------------------------------------------------------
    #: Share of a piece that must lie in a same-coloured shape's hull to join it (half: a
    #: piece cut off a shape by text across its edge lies partly outside the rest's hull).
    absorb_inside: float = 0.5
    #: Share of the space between two pieces that other elements must cover to join them.
    under_cover: float = 0.9
    #: Share of a joined shape that must lie in a ground's holes for it to stand on it.
    ground_share: float = 0.5
    #: A same-coloured piece this small next to a big element is a part of it seen through a
    #: gap (a glyph counter, a sliver between glyphs), even outside its hull.
    sliver: float = 0.03
    #: A sliver's box lies within the big element's box grown by this share (1/n) of its
    #: larger side.
    sliver_reach_parts: int = 4
    #: Pieces of at least this many glyphs that look like a line of text are slivers only
    #: if at least this share of their box lies in a line of text of another colour.
    sliver_line_glyphs: int = 3
    sliver_line_share: float = 0.5

    # --- z-order --------------------------------------------------------------------------
    #: Pixels by which boxes are grown to find elements that touch.
    touch_reach: int = 2
    #: Share of one element inside the other's hull under which they only touch.
    min_overlap: float = 0.02
    #: Share of a hole of an element that the page must fill for the hole to be seen
    #: through: what lies in it beside the page is not hidden by the element's hull.
    see_through_share: float = 0.1
    #: Hull depth (pixels) by which one touching outline must out-bite the other.
    min_bite: float = 1.0
    #: Margin by which a contact must span more of one element than of the other.
    min_span: float = 0.2
    #: Pixels a whole shape must hide under the other to call it the lower one, and by what
    #: factor more than the other hides under it.
    min_hidden: int = 20
    hidden_ratio: int = 3

    # --- clipped content ------------------------------------------------------------------
    #: Share of the content's area that the container's notch must be (a corner square
    #: leaves a triangle, half of it, outside the hull of the rest).
    clip_notch: float = 0.3
    #: Share of the joint area by which the two together may miss being convex
    #: (the staircase of a rasterised edge, a rounded corner).
    clip_convex: float = 0.02

    # --- seams between layers -------------------------------------------------------------
    #: Two layers whose shared pixels are at most this share of the smaller one's pixels
    #: overlap only along a seam (each rim pixel then goes to one of them); more is one
    #: lying on the other (text on a panel).
    rim_share: float = 0.5

    # --- amodal completion ----------------------------------------------------------------
    #: Share of a side that the cover must span for the rectangle to extend past it.
    rectangle_span: float = 0.95
    #: Pixels past a rectangle's side at which a cover beside it must still run to be over
    #: it (the cover is grown by two pixels, so a tile flush with the side ends within 3).
    cover_past_side: int = 4
    #: Share of a rectangle's box it may miss (outside the cover) and still be one.
    rectangle_missing: float = 0.05
    #: Share of an added region that must lie under the cover.
    completion_under: float = 0.95
    #: Share of the visible part a completion must hold.
    completion_holds: float = 0.97
    #: An outline is fitted only with at least this many points of its own (not along the
    #: cover).
    outline_min_own: int = 12
    #: A straight run of the outline is a side only where this share of it is its own.
    side_own_share: float = 0.9
    #: Shapes smaller than this many pixels are not completed.
    completion_min_area: int = 200
    #: Share of its area a completion must add to be worth a whole-shape layer.
    min_added: float = 0.02
    #: Largest deviation (pixels) of an outline from a straight side, or from a fitted
    #: polygon.
    straight: float = 1.5
    on_outline: float = 1.5
    #: Shortest side (outline pixels) that says where a polygon's side runs.
    min_side: int = 10
    #: Most sides a regular polygon is tried with.
    max_sides: int = 8
    #: Degrees by which a side's direction may miss a regular polygon's.
    angle_tol: float = 4.0

    # --- merging --------------------------------------------------------------------------
    #: Pairs up to this far apart in z-order are candidates (further ones rarely both move).
    z_window: int = 12
    #: Weights of a pair's cost: the gap between their boxes in the smaller one's height,
    #: their colour difference (largest channel, 0..1) and their size (joint area as a share
    #: of the document, square-rooted).
    gap_cost: float = 1.0
    colour_cost: float = 4.0
    size_cost: float = 2.0
    #: A colour difference assumed for elements without one flat colour (photos, gradients).
    unknown_colour: float = 0.3
    #: Without a count asked for, pairs this alike or more are parts of one thing: close and
    #: of one colour (at most ~0.1 apart, one gap of their height, a few % of the document).
    alike_cost: float = 0.5
    #: Unasked, a design of several elements keeps at least this many apart (with the
    #: background, three layers): its parts are what the user came to edit.
    min_kept_apart: int = 2
    #: Bars (shapes filling series_fill of their box) of one colour whose bottoms and widths
    #: differ by at most series_align pixels and whose heights differ by more,
    #: series_min_count or more, are one series (the bars of a chart).
    series_fill: float = 0.85
    series_align: int = 2
    series_min_count: int = 3
    #: Two merged elements closer in colour than this (max channel) keep one flat colour.
    merged_same_colour: float = 0.02

    # --- peel -----------------------------------------------------------------------------
    #: Pixels around an element's box (and mask) that its layer may take: its anti-aliased
    #: rim.
    peel_band: int = 2
    #: Below this colour contrast (|C - B|) unmixing is noise; the element's mask is used.
    min_contrast: float = 0.06
    #: How closely (max channel) a colour must match a black or white veil over its plate.
    veil_tol: float = 0.012
    #: A veil is black or white at least this far (squared distance) from the plate, laid at
    #: an opacity between these two.
    veil_min_contrast: float = 0.05
    veil_min_alpha: float = 0.1
    veil_max_alpha: float = 0.9
    #: How closely (max channel) a pixel in an element's band must be a mix of the element's
    #: colour and the plate to belong to the element.
    unmix_tol: float = 0.03
    #: Share of the ring around an element, within a lower shape's hull, that the shape must
    #: cover to go on under the element (a frame's hole shows the page, not the frame).
    cover_share: float = 0.5
    #: Share of its convex hull under which a flat shape, holes filled, is bent: its hull
    #: is no guide to where it goes on under what covers it.
    bent_solidity: float = 0.8
    #: Below this difference (max channel) from its plate a pixel is the plate.
    plate_tol: float = 2.5 / 255
    #: A background pixel this far (max channel) from the field, that no layer covers, is
    #: an element's edge left behind if a layer is within ``ghost_reach`` pixels.
    ghost_tol: float = 0.1
    ghost_reach: float = 3.0
    #: Where the bottom layer is this close (max channel) to the colour a transparent
    #: surround was given, it is the surround: transparent.
    surround_tol: float = 1.5 / 255


#: The tuning the engine runs with.
TUNING = Tuning()
