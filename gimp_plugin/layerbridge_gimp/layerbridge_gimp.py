#!/usr/bin/env python3
"""LayerBridge for GIMP 3: prompts and images to stacks of native layers.

The GIMP side only: procedures, dialogs, reading and writing pixels, undo, progress. What a
job sends and how the server's answers become layers is in ``plugin_core`` (host-free and
tested without GIMP); the connection is the product's own client, vendored by
``layerbridge install-gimp-plugin`` into this folder with the websockets package. GIMP puts
this folder first on ``sys.path``; this file's name is not ``layerbridge``, so the vendored
package answers ``import layerbridge``.

Cancel: GIMP 3.0 gives a plug-in no way to ask whether the user pressed the progress bar's
cancel button; pressing it makes GIMP end the plug-in's process. The plug-in starts a small
watcher process for each job that sends the server ``cancel`` when the plug-in ends before
its job did, so the server stops working on it.
"""

import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import plugin_core as core  # noqa: E402
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

PIXEL_FORMAT = "R'G'B'A u8"  # the protocol's pixels: 8-bit sRGB, straight alpha
SELECTION_FORMAT = "Y u8"
MENU_PATH = "<Image>/Layer/LayerBridge"
MAX_SEED = 2**31 - 1  # GIMP's integer arguments are 32-bit
RW = GObject.ParamFlags.READWRITE

GENERATE = "layerbridge-generate"
DECOMPOSE = "layerbridge-decompose"
REGENERATE = "layerbridge-regenerate"
SPLIT = "layerbridge-split"
PROCEDURES = {
    GENERATE: ("Generate Layers from Prompt...", "Generate a new layered image from a prompt"),
    DECOMPOSE: ("Decompose Image into Layers...", "Split the visible image into layers"),
    REGENERATE: ("Regenerate Selected Layer...", "Repaint the selected layer from a prompt"),
    SPLIT: ("Split Selected Layer...", "Split the selected layer into several layers"),
}


# --- pixels -----------------------------------------------------------------------------


def read_pixels(drawable, x=0, y=0, width=None, height=None, fmt=PIXEL_FORMAT):
    """Bytes of a rectangle in the drawable's own coordinates; outside it is transparent."""
    width = drawable.get_width() if width is None else width
    height = drawable.get_height() if height is None else height
    rect = Gegl.Rectangle.new(x, y, width, height)
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def write_pixels(buffer, width, height, data):
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), PIXEL_FORMAT, data)
    buffer.flush()


def offsets(drawable):
    """``get_offsets`` returns (ok, x, y) in GIMP 3.0's Python binding."""
    result = drawable.get_offsets()
    return tuple(result[-2:])


def layer_bounds(layer):
    x, y = offsets(layer)
    return x, y, layer.get_width(), layer.get_height()


def composite(image, width=None, height=None):
    """The visible image as RGBA bytes, at the image's size or scaled to ``width`` x
    ``height`` (merged from a copy: the user's layers stay as they are, transparency is
    kept, unlike ``flatten``)."""
    width, height = width or image.get_width(), height or image.get_height()
    copy = image.duplicate()
    try:
        if (width, height) != (image.get_width(), image.get_height()):
            copy.scale(width, height)
        merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        x, y = offsets(merged)
        return read_pixels(merged, -x, -y, width, height)
    finally:
        copy.delete()


def selection_mask(image, bounds):
    """The selection over ``bounds`` as an RGBA mask, or None when nothing is selected."""
    result = Gimp.Selection.bounds(image)
    if not result[1]:  # (ok, non_empty, x1, y1, x2, y2)
        return None
    x, y, width, height = bounds
    selection = read_pixels(image.get_selection(), x, y, width, height, SELECTION_FORMAT)
    return core.mask_from_selection(selection)


# --- the host the job runner writes into -----------------------------------------------


class GimpHost:
    """Inserts received layers into one image, all in one undo step, with GIMP's progress.

    ``source`` (split) is hidden once its parts are in, as Photoshop does: the parts show
    it now, and soft edges would be drawn twice. ``scale`` > 1: the job worked on a reduced
    copy, and each layer is scaled back to the image's size as it arrives.
    """

    def __init__(
        self,
        image,
        parent=None,
        position=0,
        title="LayerBridge",
        target=None,
        source=None,
        scale=1.0,
    ):
        self.image = image
        self.parent = parent  # where the new layer group goes
        self.position = position
        self.title = title
        self.target = target  # regenerate: the layer whose pixels are replaced
        self.source = source
        self.scale = scale
        self.group = None
        self.preview = None
        self.undo_open = False

    def show_progress(self, fraction, text):
        Gimp.progress_set_text(text)
        if fraction is not None:
            Gimp.progress_update(max(0.0, min(1.0, fraction)))

    def cancel_requested(self):
        return False  # GIMP 3.0 cannot tell a plug-in; its cancel ends the process (see top)

    def show_preview(self, message):
        """The engine's whole image on top of the new group until the first layer arrives,
        inside the same undo step (a preview is never left behind)."""
        self._open_undo()
        self._ensure_group()
        self.preview = self._new_layer(dict(message, name="Preview", x=0, y=0))
        Gimp.displays_flush()

    def add_layer(self, message):
        self._open_undo()
        self._drop_preview()
        if self.target is not None:
            replace_pixels(self.target, message)
        else:
            self._insert(message)
        Gimp.displays_flush()

    def finish(self, outcome, request):
        """Close the undo step; record the job when it ended (not when it failed)."""
        if self.undo_open:
            self._drop_preview()
            if outcome is not None:
                record_job(self.image, outcome, request)
                if self.source is not None and outcome.layers:
                    self.source.set_visible(False)
            self.image.undo_group_end()
            self.undo_open = False
        Gimp.displays_flush()

    def _open_undo(self):
        # Opened at the first layer, not at submit: a job that fails early leaves no
        # empty step in the undo history.
        if not self.undo_open:
            self.image.undo_group_start()
            self.undo_open = True

    def _drop_preview(self):
        if self.preview is not None:
            self.image.remove_layer(self.preview)
            self.preview = None

    def _ensure_group(self):
        if self.group is None:
            self.group = Gimp.GroupLayer.new(self.image, self.title)
            self.image.insert_layer(self.group, self.parent, self.position)

    def _insert(self, message):
        self._ensure_group()
        self._new_layer(message)

    def _new_layer(self, message):
        """A layer of the message's pixels on top of the group, at the image's scale."""
        width, height = message["width"], message["height"]
        layer = Gimp.Layer.new(
            self.image,
            message["name"],
            width,
            height,
            Gimp.ImageType.RGBA_IMAGE,
            100.0,
            Gimp.LayerMode.NORMAL,
        )
        # Position 0 is the top of the group; layers come bottom first, so each new one
        # goes on top and index 0 ends at the bottom.
        self.image.insert_layer(layer, self.group, 0)
        layer.set_offsets(message["x"], message["y"])
        write_pixels(layer.get_buffer(), width, height, message["data"])
        layer.update(0, 0, width, height)
        if self.scale != 1.0:  # worked on a reduced copy: back to the image's size
            x, y = message["x"], message["y"]
            left, top = round(x * self.scale), round(y * self.scale)
            right, bottom = round((x + width) * self.scale), round((y + height) * self.scale)
            layer.scale(max(1, right - left), max(1, bottom - top), False)
            layer.set_offsets(left, top)
        return layer


def replace_pixels(layer, message):
    """Regenerate in place: same layer, new pixels, resized to the returned bounds."""
    x, y, width, height = message["x"], message["y"], message["width"], message["height"]
    old_x, old_y, old_width, old_height = layer_bounds(layer)
    if not layer.has_alpha():
        layer.add_alpha()
    if (x, y, width, height) != (old_x, old_y, old_width, old_height):
        layer.resize(width, height, old_x - x, old_y - y)  # keeps the content in place
    # The shadow buffer and merge_shadow make the change one undoable pixel step.
    write_pixels(layer.get_shadow_buffer(), width, height, message["data"])
    layer.merge_shadow(True)
    layer.update(0, 0, width, height)


def record_job(image, outcome, request):
    """Keep what the server sent (job, op, params, each layer's place and sha256) with the
    image, saved in XCF: where layers came from, and what tests compare against."""
    import json

    record = {
        "job": outcome.job,
        "op": request.op,
        "params": request.params,
        "cancelled": outcome.cancelled,
        "layers": outcome.layers,
    }
    data = json.dumps(record).encode("utf-8")
    parasite = Gimp.Parasite.new(
        "layerbridge-job", Gimp.PARASITE_PERSISTENT | Gimp.PARASITE_UNDOABLE, data
    )
    image.attach_parasite(parasite)


# --- procedures -------------------------------------------------------------------------


def add_common_arguments(procedure, with_layers=True):
    """Defaults every engine accepts (0: the engine decides), ranges from the protocol."""
    limits = core.protocol.Limits()
    if with_layers:
        procedure.add_int_argument(
            "layers",
            "_Layers",
            f"How many layers, {limits.min_layers} to {limits.max_layers} "
            "(0: as many as the image needs)",
            0,
            limits.max_layers,
            0,
            RW,
        )
    procedure.add_int_argument(
        "seed",
        "_Seed",
        "The same seed gives the same result (-1: random)",
        -1,
        MAX_SEED,
        -1,
        RW,
    )
    procedure.add_int_argument(
        "steps",
        "S_teps",
        "Model steps (0: the engine's default; engines without a model ignore it)",
        0,
        200,
        0,
        RW,
    )
    procedure.add_int_argument(
        "resolution",
        "_Resolution",
        "Model resolution, one the server lists (0: the engine's default; engines without "
        "a model ignore it)",
        0,
        4096,
        0,
        RW,
    )
    procedure.add_string_argument(
        "server",
        "Ser_ver",
        "The LayerBridge server's address, e.g. ws://127.0.0.1:7861 or a team's "
        "wss://host:port (empty: the last one used)",
        "",
        RW,
    )
    procedure.add_string_argument(
        "token",
        "To_ken",
        "The server's token, for a server on another machine (empty: the last one used)",
        "",
        RW,
    )


def add_arguments(procedure, name):
    if name in (GENERATE, REGENERATE):
        procedure.add_string_argument("prompt", "_Prompt", "What to paint", "", RW)
    elif name == DECOMPOSE:
        procedure.add_string_argument(
            "prompt", "_Caption", "What the image shows (optional)", "", RW
        )
    if name == GENERATE:
        procedure.add_int_argument(
            "width", "_Width", "Width of a new image (0: the image's, or 1024)", 0, 16384, 0, RW
        )
        procedure.add_int_argument(
            "height",
            "_Height",
            "Height of a new image (0: the image's, or 1024)",
            0,
            16384,
            0,
            RW,
        )
    if name in (GENERATE, DECOMPOSE):
        procedure.add_boolean_argument(
            "reduce",
            "Work at a re_duced size if the image is larger than the server takes",
            "Send a smaller copy and scale the layers back to the image's size",
            True,
            RW,
        )
    add_common_arguments(procedure, with_layers=name != REGENERATE)


def failure(procedure, message):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


def show_dialog(procedure, config, title):
    """The procedure's dialog; GIMP fills it with the last values used and remembers them."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init("layerbridge")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    dialog.fill(None)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def selected_layer(image, drawables):
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        raise core.JobFailed("Select exactly one layer first.")
    layer = drawables[0]
    if layer.is_group():
        raise core.JobFailed("Select a layer with pixels, not a layer group.")
    return layer


def text_argument(config, key):
    """A string argument, "" where GIMP hands over None: GIMP 3.0 reads the "" default of a
    string argument back from its plug-in cache (pluginrc) as NULL, so once GIMP has started
    before, a caller that leaves the prompt or the server out passes None."""
    return config.get_property(key) or ""


def build_job(name, image, drawables, config, interactive, welcome):
    """The request and the host for one run, captured now: document size, the selected
    layer and its bounds, the selection. The server's ``welcome`` says how large an image it
    takes: a larger one is refused before it is read, or worked on reduced (``reduce``)."""

    def arg(key):
        return config.get_property(key)

    tuning = {"steps": arg("steps"), "resolution": arg("resolution")}
    max_pixels = welcome["capabilities"]["max_pixels"]

    if name == GENERATE:
        width = arg("width") or (image.get_width() if image else 1024)
        height = arg("height") or (image.get_height() if image else 1024)
        small_width, small_height = fit_size(width, height, max_pixels, arg("reduce"), "image")
        if image is None:
            image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
            if interactive:
                Gimp.Display.new(image)
        request = core.generate_request(
            text_argument(config, "prompt"),
            small_width,
            small_height,
            arg("layers"),
            arg("seed"),
            **tuning,
        )
        return request, GimpHost(image, title=request.title, scale=width / small_width)
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        raise core.JobFailed("LayerBridge works on RGB images: use Image > Mode > RGB first.")
    width, height = image.get_width(), image.get_height()
    if name == DECOMPOSE:
        caption = text_argument(config, "prompt")
        small_width, small_height = fit_size(width, height, max_pixels, arg("reduce"), "image")
        request = core.decompose_request(
            composite(image, small_width, small_height),
            small_width,
            small_height,
            arg("layers"),
            arg("seed"),
            caption,
            **tuning,
        )
        return request, GimpHost(image, title=request.title, scale=width / small_width)
    layer = selected_layer(image, drawables)
    bounds = layer_bounds(layer)
    fit_size(bounds[2], bounds[3], max_pixels, False, "layer")
    pixels = read_pixels(layer)
    if name == SPLIT:
        request = core.split_request(
            pixels, bounds, arg("layers"), arg("seed"), layer.get_name(), **tuning
        )
        host = GimpHost(
            image,
            layer.get_parent(),
            image.get_item_position(layer),
            request.title,
            source=layer,
        )
        return request, host
    fit_size(width, height, max_pixels, False, "image")
    request = core.regenerate_request(
        text_argument(config, "prompt"),
        arg("seed"),
        pixels,
        bounds,
        document=(composite(image), width, height),
        mask=selection_mask(image, bounds),
        **tuning,
    )
    return request, GimpHost(image, target=layer)


def fit_size(width, height, max_pixels, reduce, what):
    """The size to send: as it is when the server takes it, else reduced when allowed."""
    small = core.reduced_size(width, height, max_pixels)
    if small == (width, height) or reduce:
        return small
    where = (
        'tick "Work at a reduced size" in the dialog, or scale the image down'
        if what == "image"
        else "scale the layer down"
    )
    raise core.JobFailed(
        f"The {what} is {width}x{height} = {width * height} pixels; this server takes at most "
        f"{max_pixels}: {where}, or start the server with a larger --max-pixels."
    )


def run_procedure(procedure, run_mode, image, drawables, config, data):
    name = procedure.get_name()
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive and not show_dialog(procedure, config, PROCEDURES[name][0].rstrip(".")):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    settings = core.Settings.load(Gimp.directory()).with_server(
        text_argument(config, "server"), text_argument(config, "token")
    )
    host = None
    outcome = None
    try:
        if name in (GENERATE, REGENERATE) and not text_argument(config, "prompt").strip():
            raise core.JobFailed("Type a prompt: it says what to paint.")
        Gimp.progress_init(f"LayerBridge: connecting to {settings.server}")
        client = core.connect_or_start(settings, Gimp.directory(), Gimp.progress_set_text)
        settings.save(Gimp.directory())  # remembered once a server answered at it
        try:
            request, host = build_job(name, image, drawables, config, interactive, client.welcome)
            core.fit_to_server(request, client.welcome)
            watcher = core.CancelWatcher.start(
                settings.server, settings.token, secret=client.secret
            )
            try:
                outcome = core.run_job(
                    client,
                    request,
                    host,
                    job=watcher.job,
                    reconnect=lambda: core.connect(
                        settings.server, settings.token, secret=client.secret
                    ),
                )
            finally:
                watcher.stop()
        finally:
            client.close()
        host.finish(outcome, request)
    except Exception as exc:  # the plug-in's boundary: GIMP gets a message, never a traceback
        if host is not None:
            host.finish(None, None)  # closes the undo step of what was inserted already
        text = str(exc) if isinstance(exc, core.JobFailed) else f"LayerBridge failed: {exc!r}"
        return failure(procedure, text)
    finally:
        Gimp.progress_end()
    if outcome.cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


class LayerBridge(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(PROCEDURES)

    def do_set_i18n(self, name):
        return False  # no translations shipped yet

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(
            self, name, Gimp.PDBProcType.PLUGIN, run_procedure, None
        )
        label, blurb = PROCEDURES[name]
        procedure.set_menu_label(label)
        procedure.add_menu_path(MENU_PATH)
        procedure.set_documentation(blurb, blurb, name)
        procedure.set_attribution("LayerBridge", "LayerBridge", "2026")
        procedure.set_image_types("*")
        if name == GENERATE:  # also from an empty GIMP: it makes a new image
            procedure.set_sensitivity_mask(
                Gimp.ProcedureSensitivityMask.NO_IMAGE
                | Gimp.ProcedureSensitivityMask.DRAWABLE
                | Gimp.ProcedureSensitivityMask.DRAWABLES
                | Gimp.ProcedureSensitivityMask.NO_DRAWABLES
            )
        elif name == DECOMPOSE:
            procedure.set_sensitivity_mask(
                Gimp.ProcedureSensitivityMask.DRAWABLE
                | Gimp.ProcedureSensitivityMask.DRAWABLES
                | Gimp.ProcedureSensitivityMask.NO_DRAWABLES
            )
        else:
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        add_arguments(procedure, name)
        return procedure


if __name__ == "__main__":
    Gimp.main(LayerBridge.__gtype__, sys.argv)
