"""The plug-in's GIMP adapter with a stand-in GIMP API, against a real server.

The real GIMP run (``tests/gimp/run.sh``) proves the pixels; GIMP 3.0's PDB has no call that
performs an undo, so this test checks what makes one undo step: every
``undo_group_start`` is matched by one ``undo_group_end``, on success and on failure, and all
changes happen between them.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from unittest import mock

import numpy as np
import pytest

from layerbridge import protocol
from tests.helpers import PLUGIN_DIR
from tests.synthetic import two_box_design as design


class Buffer:
    def __init__(self, layer) -> None:
        self.layer = layer

    def get(self, rect, scale, fmt, abyss) -> bytes:
        x, y, w, h = rect
        assert (x, y) == (0, 0), "the stand-in reads from the layer's origin only"
        return self.layer.pixels[:h, :w].tobytes()

    def set(self, rect, fmt, data) -> None:
        x, y, w, h = rect
        self.layer.log.append(("set", self.layer.name, (x, y, w, h)))
        self.layer.written = bytes(data)

    def flush(self) -> None:
        pass


class FakeLayer:
    def __init__(self, log, name, width, height, x=0, y=0, group=False) -> None:
        self.log, self.name, self.x, self.y = log, name, x, y
        self.pixels = np.zeros((height, width, 4), np.uint8)
        self.group, self.alpha, self.written = group, True, None

    def get_width(self):
        return self.pixels.shape[1]

    def get_height(self):
        return self.pixels.shape[0]

    def get_offsets(self):
        return True, self.x, self.y

    def set_offsets(self, x, y):
        self.log.append(("offsets", self.name, x, y))
        self.x, self.y = x, y

    def get_buffer(self):
        return Buffer(self)

    def set_visible(self, visible):
        self.log.append(("visible", self.name, visible))

    def scale(self, width, height, local_origin):
        self.log.append(("scale", self.name, width, height))

    def get_shadow_buffer(self):
        self.log.append(("shadow", self.name))
        return Buffer(self)

    def merge_shadow(self, undo):
        self.log.append(("merge_shadow", self.name, undo))

    def resize(self, w, h, offx, offy):
        self.log.append(("resize", self.name, w, h, offx, offy))
        self.x, self.y = self.x - offx, self.y - offy
        self.pixels = np.zeros((h, w, 4), np.uint8)

    def update(self, *args):
        pass

    def is_group(self):
        return self.group

    def has_alpha(self):
        return self.alpha

    def get_name(self):
        return self.name

    def get_parent(self):
        return None


class FakeImage:
    def __init__(self, width, height, pixels: bytes) -> None:
        self.log: list = []
        self.width, self.height = width, height
        self.source = FakeLayer(self.log, "source", width, height)
        self.source.pixels = np.frombuffer(pixels, np.uint8).reshape(height, width, 4).copy()

    def get_width(self):
        return self.width

    def get_height(self):
        return self.height

    def get_base_type(self):
        return "RGB"

    def undo_group_start(self):
        self.log.append(("undo_start",))
        return True

    def undo_group_end(self):
        self.log.append(("undo_end",))
        return True

    def insert_layer(self, layer, parent, position):
        self.log.append(("insert", layer.name, parent.name if parent else None, position))

    def remove_layer(self, layer):
        self.log.append(("remove", layer.name))

    def attach_parasite(self, parasite):
        self.log.append(("parasite",))

    def duplicate(self):
        copy = mock.Mock()
        copy.merge_visible_layers.return_value = self.source
        copy.scale.side_effect = lambda w, h: self.log.append(("copy scaled", w, h))
        return copy

    def get_item_position(self, layer):
        return 3

    def get_selection(self):
        return None


@pytest.fixture
def adapter(tmp_path, monkeypatch):
    """layerbridge_gimp.py loaded with stand-ins for GIMP's gi modules."""
    gimp = mock.MagicMock(name="Gimp")
    gimp.PlugIn = object
    gimp.directory.return_value = str(tmp_path)
    gimp.ImageBaseType.RGB = "RGB"
    gimp.Selection.bounds.return_value = (True, False, 0, 0, 0, 0)
    gimp.Layer = FakeLayer
    gimp.Layer.new = staticmethod(lambda image, name, w, h, *rest: FakeLayer(image.log, name, w, h))
    gimp.GroupLayer.new = lambda image, name: FakeLayer(image.log, name, 1, 1, group=True)
    gegl = mock.MagicMock(name="Gegl")
    gegl.Rectangle.new = lambda x, y, w, h: (x, y, w, h)
    repository = types.ModuleType("gi.repository")
    repository.Gimp, repository.Gegl = gimp, gegl
    repository.GLib, repository.GObject = mock.MagicMock(), mock.MagicMock()
    gi = types.ModuleType("gi")
    gi.require_version = lambda *args: None
    gi.repository = repository
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", repository)
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))  # as GIMP runs a plug-in: its folder first
    entry = PLUGIN_DIR / "layerbridge_gimp.py"
    spec = importlib.util.spec_from_file_location("gimp_adapter", entry)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config(**values):
    settings = {"layers": 0, "seed": 3, "steps": 0, "resolution": 0, "prompt": "", "width": 0}
    settings.update(height=0, token="", reduce=True)
    settings.update(values)
    cfg = mock.Mock()
    cfg.get_property.side_effect = lambda key: settings[key]
    return cfg


def procedure(name):
    proc = mock.Mock()
    proc.get_name.return_value = name
    proc.new_return_values.side_effect = lambda status, error: (status, error)
    return proc


def test_decompose_is_one_undo_step_with_a_group_of_layers(adapter, classic_server) -> None:
    image = FakeImage(120, 90, design())
    cfg = config(server=classic_server.url)
    status, error = adapter.run_procedure(
        procedure(adapter.DECOMPOSE), "NONINTERACTIVE", image, [image.source], cfg, None
    )
    assert status is adapter.Gimp.PDBStatusType.SUCCESS, error
    kinds = [entry[0] for entry in image.log]
    assert kinds.count("undo_start") == 1 and kinds.count("undo_end") == 1
    start, end = kinds.index("undo_start"), kinds.index("undo_end")
    changes = [i for i, kind in enumerate(kinds) if kind in ("insert", "set", "parasite")]
    assert changes and start < min(changes) and max(changes) < end
    inserts = [entry for entry in image.log if entry[0] == "insert"]
    assert inserts[0] == ("insert", "Decomposed [seed 3]", None, 0)
    assert all(entry[2:] == ("Decomposed [seed 3]", 0) for entry in inserts[1:])  # each on top


def test_a_text_argument_gimp_hands_over_as_none_counts_as_empty(adapter, classic_server):
    """GIMP 3.0 reads a "" string default back from its plug-in cache as NULL."""
    image = FakeImage(120, 90, design())
    cfg = config(server=classic_server.url, prompt=None)
    status, error = adapter.run_procedure(
        procedure(adapter.DECOMPOSE), "NONINTERACTIVE", image, [image.source], cfg, None
    )
    assert status is adapter.Gimp.PDBStatusType.SUCCESS, error
    assert [entry for entry in image.log if entry[0] == "insert"][0][1] == "Decomposed [seed 3]"


def test_a_failed_job_leaves_no_undo_step(adapter, classic_server) -> None:
    image = FakeImage(120, 90, design())
    cfg = config(server=classic_server.url, prompt="a kite")
    status, error = adapter.run_procedure(
        procedure(adapter.GENERATE), "NONINTERACTIVE", image, [image.source], cfg, None
    )
    assert status is adapter.Gimp.PDBStatusType.EXECUTION_ERROR
    assert "cannot" in str(adapter.GLib.Error.call_args)
    assert not [entry for entry in image.log if entry[0].startswith("undo")]


def test_regenerate_replaces_pixels_through_the_shadow_buffer(adapter) -> None:
    image = FakeImage(20, 10, bytes(20 * 10 * 4))
    layer = FakeLayer(image.log, "painted", 8, 6, x=4, y=2)
    host = adapter.GimpHost(image, target=layer)
    data = bytes(i % 251 for i in range(10 * 8 * 4))
    host.add_layer({"name": "x", "x": 2, "y": 1, "width": 10, "height": 8, "data": data})
    outcome = types.SimpleNamespace(job="j", layers=[], cancelled=False)
    host.finish(outcome, types.SimpleNamespace(op="regenerate", params={"prompt": "p"}))
    assert ("resize", "painted", 10, 8, 2, 1) in image.log
    assert (layer.x, layer.y) == (2, 1) and layer.written == data
    kinds = [entry[0] for entry in image.log]
    assert kinds == [
        "undo_start",
        "resize",
        "shadow",
        "set",
        "merge_shadow",
        "parasite",
        "undo_end",
    ]


def test_steps_and_resolution_of_a_model_engine_are_left_out_for_classic(adapter, classic_server):
    """The dialog's values are remembered across engines: 640 suits qwen, not classic."""
    image = FakeImage(120, 90, design())
    cfg = config(server=classic_server.url, steps=30, resolution=640)
    status, error = adapter.run_procedure(
        procedure(adapter.DECOMPOSE), "NONINTERACTIVE", image, [image.source], cfg, None
    )
    assert status is adapter.Gimp.PDBStatusType.SUCCESS, error


def test_layers_over_the_servers_limit_are_refused_before_anything_is_read(
    adapter, serve, classic_engine, tmp_path
) -> None:
    server = serve(classic_engine, limits=protocol.Limits(max_layers=4))
    image = FakeImage(120, 90, design())
    cfg = config(server=server.url, layers=6)
    status, error = adapter.run_procedure(
        procedure(adapter.DECOMPOSE), "NONINTERACTIVE", image, [image.source], cfg, None
    )
    assert status is adapter.Gimp.PDBStatusType.EXECUTION_ERROR
    assert "Layers 6: this server makes 1 to 4 layers" in str(adapter.GLib.Error.call_args)
    assert not image.log


def test_a_large_image_is_worked_on_reduced_and_scaled_back(adapter, serve, classic_engine) -> None:
    server = serve(classic_engine, limits=protocol.Limits(max_pixels=60 * 45))
    image = FakeImage(120, 90, design())
    refused = config(server=server.url, reduce=False)
    status, _ = adapter.run_procedure(
        procedure(adapter.DECOMPOSE), "NONINTERACTIVE", image, [image.source], refused, None
    )
    assert status is adapter.Gimp.PDBStatusType.EXECUTION_ERROR
    message = str(adapter.GLib.Error.call_args)
    assert "120x90 = 10800 pixels; this server takes at most 2700" in message
    assert "reduced size" in message and not image.log
    status, error = adapter.run_procedure(
        procedure(adapter.DECOMPOSE),
        "NONINTERACTIVE",
        image,
        [image.source],
        config(server=server.url),
        None,
    )
    assert status is adapter.Gimp.PDBStatusType.SUCCESS, error
    assert ("copy scaled", 60, 45) in image.log  # a reduced copy was sent
    scaled = [entry for entry in image.log if entry[0] == "scale"]
    assert scaled and ("scale", "background", 120, 90) in scaled  # the bottom layer: the image


def test_split_hides_its_source_within_the_undo_step(adapter) -> None:
    image = FakeImage(20, 10, bytes(20 * 10 * 4))
    source = FakeLayer(image.log, "painted", 8, 6)
    host = adapter.GimpHost(image, title="painted (split)", source=source)
    host.add_layer({"name": "part", "x": 0, "y": 0, "width": 2, "height": 2, "data": bytes(16)})
    outcome = types.SimpleNamespace(job="j", layers=[{"index": 0}], cancelled=False)
    host.finish(outcome, types.SimpleNamespace(op="split", params={}))
    kinds = [entry[0] for entry in image.log]
    assert ("visible", "painted", False) in image.log
    assert kinds.index("visible") < kinds.index("undo_end")


def test_the_preview_shows_until_the_first_layer_takes_its_place(adapter) -> None:
    image = FakeImage(20, 10, bytes(20 * 10 * 4))
    host = adapter.GimpHost(image, title="a kite")
    preview = {"type": "preview", "width": 20, "height": 10, "data": bytes(20 * 10 * 4)}
    host.show_preview(preview)
    host.add_layer({"name": "sky", "x": 0, "y": 0, "width": 2, "height": 2, "data": bytes(16)})
    host.finish(
        types.SimpleNamespace(job="j", layers=[{}], cancelled=False),
        types.SimpleNamespace(op="generate", params={}),
    )
    names = [entry[:2] for entry in image.log if entry[0] in ("insert", "remove")]
    assert names == [
        ("insert", "a kite"),
        ("insert", "Preview"),
        ("remove", "Preview"),
        ("insert", "sky"),
    ]
