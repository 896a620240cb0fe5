"""Engines by name: the one place that knows every concrete engine.

Kept apart from :mod:`layerbridge.engines.base` so that the interface imports no engine and
no engine imports the registry; the concrete engines load only when asked for.
"""

from __future__ import annotations

from typing import Any

from layerbridge.engines.base import Engine

ENGINE_NAMES = ("classic", "qwen", "tiny")


def create_engine(name: str, **options: Any) -> Engine:
    """Build the engine called ``name`` (``classic``, ``qwen`` or ``tiny``)."""
    if name == "classic":
        from layerbridge.engines.classic import ClassicEngine

        return ClassicEngine(**options)
    if name == "qwen":
        from layerbridge.engines.diffusion import DiffusionEngine

        return DiffusionEngine.from_pretrained(**options)
    if name == "tiny":
        from layerbridge.engines.diffusion import DiffusionEngine

        return DiffusionEngine.tiny(**options)
    raise ValueError(f"unknown engine {name!r}: choose classic, qwen or tiny")
