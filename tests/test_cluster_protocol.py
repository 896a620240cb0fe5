"""The shared protocol knows what a pool adds: the ``worker_lost`` error and ``workers``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from layerbridge.types import ErrorCode

SHARED = Path(__file__).resolve().parents[1] / "shared"
SCHEMA = json.loads((SHARED / "protocol.schema.json").read_text())


def test_the_schema_lists_every_error_code() -> None:
    codes = SCHEMA["$defs"]["server.error"]["properties"]["code"]["enum"]
    assert sorted(codes) == sorted(code.value for code in ErrorCode)
    assert "worker_lost" in codes


def test_welcome_may_say_how_many_workers_serve() -> None:
    welcome = {"type": "welcome", "protocol": 1, "server": "layerbridge/1", "engine": "tiny",
               "capabilities": {"ops": ["decompose"], "max_pixels": 1, "resolutions": [],
                                "layers": {"min": 1, "max": 10}, "max_frame_bytes": 4,
                                "result_ttl_s": 1.0, "workers": 4},
               "secret": "s" * 43}
    jsonschema.validate(welcome, SCHEMA)
    welcome["capabilities"]["workers"] = 0
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(welcome)
