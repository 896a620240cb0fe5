"""The classic engine: weight-free, CPU-only decomposition of designs into object layers."""

from layerbridge.engines.classic.engine import ClassicEngine

__all__ = ["ClassicEngine"]
