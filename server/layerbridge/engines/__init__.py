"""Engines: one interface (``base.Engine``), chosen by name when the server starts
(``registry.create_engine``)."""

from layerbridge.engines.base import (
    Engine,
    EngineError,
    InputImage,
    JobCancelled,
    JobContext,
    JobRequest,
    Layer,
)
from layerbridge.engines.registry import create_engine

__all__ = [
    "Engine",
    "EngineError",
    "InputImage",
    "JobCancelled",
    "JobContext",
    "JobRequest",
    "Layer",
    "create_engine",
]
