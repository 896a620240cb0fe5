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

    def attach_parasite(self, parasite):
        self.log.append(("parasite",))

    def duplicate(self):
        copy = mock.Mock()
        copy.merge_visible_layers.return_value = self.source
        return copy

    def get_item_position(self, layer):
        return 3

    def get_selection(self):
        return None


@pytest.fixture
def adapter(tmp_path, monkeypatch):
    """layerbridge.py loaded with stand-ins for GIMP's gi modules."""
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
    saved_path = list(sys.path)
    spec = importlib.util.spec_from_file_location("gimp_adapter", PLUGIN_DIR / "layerbridge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.path[:] = saved_path  # the plug-in puts its folder first; keep the package here
    return module


def config(**values):
    settings = {"layers": 0, "seed": 3, "steps": 0, "resolution": 0, "prompt": "", "width": 0}
    settings["height"] = 0
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
    assert inserts[0] == ("insert", "Decomposed", None, 0)
    assert all(entry[2:] == ("Decomposed", 0) for entry in inserts[1:])  # each on top


def test_a_text_argument_gimp_hands_over_as_none_counts_as_empty(adapter, classic_server):
    """GIMP 3.0 reads a "" string default back from its plug-in cache as NULL."""
    image = FakeImage(120, 90, design())
    cfg = config(server=classic_server.url, prompt=None)
    status, error = adapter.run_procedure(
        procedure(adapter.DECOMPOSE), "NONINTERACTIVE", image, [image.source], cfg, None
    )
    assert status is adapter.Gimp.PDBStatusType.SUCCESS, error
    assert [entry for entry in image.log if entry[0] == "insert"][0][1] == "Decomposed"


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
