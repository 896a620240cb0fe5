"""Engines: one interface (``base.Engine``), chosen when the server starts."""

from layerbridge.engines.base import (
    Engine,
    EngineError,
    InputImage,
    JobCancelled,
    JobContext,
    JobRequest,
    Layer,
    create_engine,
)

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
