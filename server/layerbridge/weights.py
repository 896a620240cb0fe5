"""Finding and loading model weights offline: a local folder or the Hugging Face cache.

The server never downloads: a model is fetched once on a connected machine
(``hf download Qwen/Qwen-Image-Layered``) and found here afterwards, the way
``HF_HUB_OFFLINE=1`` behaves. A missing or partial model is an :class:`EngineError`
(``model_missing``) that names the model, the folder searched and the command that fetches it.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def has_torchvision() -> bool:
    """transformers' video processors need torchvision; without it we build image-only."""
    return importlib.util.find_spec("torchvision") is not None


def qwen_vl_processor(image_processor: Any, tokenizer: Any) -> Any:
    """A Qwen2VLProcessor from its parts, with or without torchvision.

    The pipelines use the processor for images and text only (captioning, edit conditions).
    Without torchvision transformers exports no video processor class and its type check
    fails on any stand-in, so an image-only subclass accepts a bare VideoProcessorMixin.
    """
    from transformers import Qwen2VLProcessor
    from transformers.video_processing_utils import VideoProcessorMixin

    if has_torchvision():
        from transformers import Qwen2VLVideoProcessor

        video_processor: Any = Qwen2VLVideoProcessor()
        return Qwen2VLProcessor(image_processor, tokenizer, video_processor)

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and isinstance(argument, VideoProcessorMixin):
                return VideoProcessorMixin
            return super().check_argument_for_proper_class(argument_name, argument)

    return ImageOnlyQwen2VLProcessor(image_processor, tokenizer, VideoProcessorMixin())
