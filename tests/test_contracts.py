"""The contracts in code: typed messages byte for byte as the wire has them, one list of
error codes, typed params, and modules that import only downwards."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from layerbridge import protocol
from layerbridge.engines.base import JobRequest
from layerbridge.types import (
    DecomposeParams,
    EngineError,
    ErrorCode,
    GenerateParams,
    JobState,
    LayerBridgeError,
    RegenerateParams,
    SplitParams,
    is_out_of_memory,
    out_of_memory_error,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "server" / "layerbridge"
SHARED = ROOT / "shared"
VECTORS = json.loads((SHARED / "vectors.json").read_text())

SERVER_MESSAGES: dict[str, type[protocol.Message]] = {
    cls.type: cls
    for cls in (
        protocol.WelcomeMessage,
        protocol.QueuedMessage,
        protocol.ProgressMessage,
        protocol.PreviewMessage,
        protocol.LayerMessage,
        protocol.DoneMessage,
        protocol.CancelledMessage,
        protocol.ErrorMessage,
    )
}


def typed(wire: dict[str, Any]) -> protocol.Message:
    """A server message dict as its typed class (nested records built by hand)."""
    fields = {key: value for key, value in wire.items() if key != "type"}
    if wire["type"] == "welcome":
        caps = dict(fields["capabilities"])
        caps["layers"] = protocol.LayerRange(**caps["layers"])
        fields["capabilities"] = protocol.Capabilities(**caps)
    if wire["type"] == "done":
        fields["timings"] = protocol.Timings(**fields["timings"])
    return SERVER_MESSAGES[wire["type"]](**fields)


@pytest.mark.parametrize("wire", VECTORS["server_messages"], ids=lambda m: m["type"])
def test_typed_server_messages_carry_the_vectors(wire: dict[str, Any]) -> None:
    assert json.loads(protocol.encode(typed(wire))) == wire


def test_typed_messages_keep_the_servers_key_order() -> None:
    """The bytes the server sent before its messages were typed."""
    assert protocol.encode(protocol.ErrorMessage(ErrorCode.TIMEOUT, "late", "j")) == (
        '{"type":"error","code":"timeout","message":"late","job":"j"}'
    )
    done = protocol.DoneMessage("j", 4, 3, 2, protocol.Timings(0.1, 0.2, 0.3), "/o/a.psd")
    assert protocol.encode(done) == (
        '{"type":"done","job":"j","width":4,"height":3,"layers":2,'
        '"timings":{"queued_s":0.1,"run_s":0.2,"total_s":0.3},"saved":"/o/a.psd"}'
    )
    layer = protocol.LayerMessage("j", 0, 1, "a", 1, 2, 3, 4, "0" * 64)
    assert protocol.encode(layer) == (
        '{"type":"layer","job":"j","index":0,"count":1,"name":"a","x":1,"y":2,'
        f'"width":3,"height":4,"sha256":"{"0" * 64}"}}'
    )
    assert protocol.encode(protocol.QueuedMessage("j", 2)) == (
        '{"type":"queued","job":"j","position":2}'
    )


def test_optional_fields_are_left_out_while_unset() -> None:
    assert protocol.encode(protocol.ProgressMessage("j", 0.5, "peel")) == (
        '{"type":"progress","job":"j","fraction":0.5,"stage":"peel"}'
    )
    assert protocol.encode(protocol.ProgressMessage("j", 0.5, "denoise", 2, 8)) == (
        '{"type":"progress","job":"j","fraction":0.5,"stage":"denoise","step":2,"steps":8}'
    )
    assert protocol.ErrorMessage(ErrorCode.TIMEOUT, "late").to_wire() == {
        "type": "error",
        "code": "timeout",
        "message": "late",
    }


def test_client_messages_encode_as_before() -> None:
    assert protocol.encode(protocol.HelloMessage("gimp/1", "t")) == (
        '{"type":"hello","protocol":1,"client":"gimp/1","token":"t"}'
    )
    assert protocol.encode(protocol.HelloMessage("gimp/1")) == (
        '{"type":"hello","protocol":1,"client":"gimp/1"}'
    )
    assert protocol.encode(protocol.CancelMessage("j")) == '{"type":"cancel","job":"j"}'
    assert protocol.encode(protocol.FetchMessage("j")) == '{"type":"fetch","job":"j"}'
    [text] = protocol.submit_frames("j", "split", {"layers": 2})
    assert text == '{"type":"submit","job":"j","op":"split","params":{"layers":2},"inputs":[]}'


# --- one list of error codes ----------------------------------------------------------


def test_error_codes_are_the_documented_ones() -> None:
    text = (SHARED / "PROTOCOL.md").read_text()
    table = text[text.index("## Errors") :]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)
    assert sorted(documented) == sorted(code.value for code in ErrorCode)


def test_the_panels_error_codes_are_wire_codes() -> None:
    """The Photoshop panel raises and switches on codes by their strings; each must be one
    of ours. ``not_connected`` is the panel's own (no server sent it)."""
    source = "\n".join(p.read_text() for p in (ROOT / "photoshop_uxp" / "src").glob("*.js"))
    raised = re.findall(r'ProtocolError\(\s*"([a-z_]+)"', source)
    compared = re.findall(r'code\s*===?\s*"([a-z_]+)"', source)
    assert raised and compared  # the patterns still find the panel's codes
    assert set(raised + compared) <= {code.value for code in ErrorCode}


def test_old_names_of_error_codes_still_resolve() -> None:
    assert protocol.TOO_MANY_LAYERS is ErrorCode.TOO_MANY_LAYERS
    assert f"{ErrorCode.BAD_JSON}" == "bad_json" and str(JobState.DONE) == "done"
    with pytest.raises(AttributeError):
        protocol.NOT_A_CODE  # noqa: B018


def test_errors_share_one_root_and_argument_order() -> None:
    from layerbridge.client import ServerError
    from layerbridge.jobs import QueueFull

    for cls in (protocol.ProtocolError, EngineError, QueueFull, ServerError):
        error = cls(ErrorCode.BAD_PARAMS, "fix it")
        assert isinstance(error, LayerBridgeError)
        assert (error.code, error.message) == (ErrorCode.BAD_PARAMS, "fix it")


def test_out_of_memory_has_one_error() -> None:
    class OutOfMemoryError(RuntimeError):  # torch's name, without torch
        pass

    assert is_out_of_memory(MemoryError()) and is_out_of_memory(OutOfMemoryError())
    assert not is_out_of_memory(RuntimeError("out of luck"))
    error = out_of_memory_error(MemoryError("host"))
    assert error.code == ErrorCode.OUT_OF_MEMORY and "memory option" in error.message


# --- typed params ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "cls"),
    [
        ("decompose", DecomposeParams),
        ("generate", GenerateParams),
        ("regenerate", RegenerateParams),
        ("split", SplitParams),
    ],
)
def test_validation_builds_each_ops_params_once_with_defaults(op: str, cls: type) -> None:
    given = {"prompt": "a cat"}
    params = protocol.validate_params(op, given, protocol.Limits())
    assert type(params) is cls and params.prompt == "a cat" and params.seed is None
    request = JobRequest("j", op, params)
    assert request.params is params  # handed on as built, not copied or re-defaulted


def test_params_defaults_are_the_protocols() -> None:
    params = protocol.validate_params("generate", {"prompt": "x"}, protocol.Limits())
    assert isinstance(params, GenerateParams)
    assert (params.width, params.height, params.layers) == (1024, 1024, "auto")
    with pytest.raises(AttributeError):
        params.width = 5  # type: ignore[misc]


def test_every_param_has_one_rule_and_belongs_to_a_params_class() -> None:
    for name, rule in protocol.PARAMS.items():
        assert rule.ops(name), f"{name} is taken by no op"
    for op in protocol.OPS:
        assert {name for name in protocol.PARAMS if op in protocol.PARAMS[name].ops(name)} == set(
            protocol.params_class(op)._names()  # type: ignore[union-attr]
        )


def test_a_plain_mapping_becomes_the_ops_params() -> None:
    request = JobRequest("j", "split", {"layers": 3})
    assert request.params == SplitParams(layers=3)
    with pytest.raises(EngineError) as unknown:
        JobRequest("j", "split", {"width": 3})
    assert unknown.value.code == "bad_params"
    with pytest.raises(EngineError) as mismatch:
        JobRequest("j", "split", DecomposeParams())
    assert mismatch.value.code == "bad_params"


# --- layering -------------------------------------------------------------------------


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_types_module_imports_nothing_of_ours() -> None:
    assert not {n for n in imports_of(PACKAGE / "types.py") if n.startswith("layerbridge")}


def test_the_engine_interface_imports_no_engine() -> None:
    ours = {n for n in imports_of(PACKAGE / "engines" / "base.py") if n.startswith("layerbridge")}
    assert ours == {"layerbridge.types"}


@pytest.mark.parametrize("module", ["imaging.py", "export.py", "protocol.py"])
def test_lower_modules_import_no_engine_server_or_client(module: str) -> None:
    above = ("layerbridge.engines", "layerbridge.server", "layerbridge.client", "layerbridge.jobs")
    assert not [n for n in imports_of(PACKAGE / module) if n.startswith(above)]


@pytest.mark.parametrize("module", ["imaging.py", "export.py", "jobs.py"])
def test_layer_comes_from_the_types_module(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text())
    sources = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and any(a.name == "Layer" for a in node.names)
    }
    assert sources == {"layerbridge.types"}


def test_the_server_does_not_import_the_client() -> None:
    assert "layerbridge.client" not in imports_of(PACKAGE / "server.py")


@pytest.mark.parametrize("module", ["server.py", "jobs.py", "client.py"])
def test_no_outgoing_message_is_a_dict_literal(module: str) -> None:
    """Messages are built from the protocol's classes; a ``{"type": ...}`` dict (or
    ``dict(type=...)``) outside protocol.py would be a second definition of the wire."""
    tree = ast.parse((PACKAGE / module).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if "type" in keys:
                found.append(node.lineno)
        is_dict_call = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict"
        if is_dict_call and any(keyword.arg == "type" for keyword in node.keywords):
            found.append(node.lineno)
    assert not found, f"{module} builds messages as dicts at lines {found}"
