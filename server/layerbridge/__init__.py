"""LayerBridge: layered image generation and decomposition for GIMP and Photoshop."""

__version__ = "0.1.0"
