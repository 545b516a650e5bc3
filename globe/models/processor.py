"""Image-only processors, and saving any family's processor.

The stock processors of several families also build a video processor, which needs torchvision; a
CPU torch with the registry's (CUDA) torchvision cannot import it. Geo-localisation only ever feeds
still images, so :class:`ImageOnlyProcessorMixin` keeps the tokenizer and a PIL image processor and
nothing else. Each family's image-only class lives with its backbone (``globe.models.backbones``):
the stock processor class plus this mixin and the family's PIL image processor. The files it reads
are the stock ones, so the same directory also loads with the stock processor where torchvision
works (vLLM does that).

Names of those classes that used to be defined here resolve in their backbone's module.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from transformers import AutoTokenizer


class ImageOnlyProcessorMixin:
    """Put first in the bases of a stock processor class: no video processor (no torchvision).

    ``pil_image_processor_class``: the family's PIL image processor, read from the directory's
    ``preprocessor_config.json``. Arguments of the stock ``__init__`` other than the sub-processors
    (e.g. ``image_seq_length``) are read from ``processor_config.json``.
    """

    pil_image_processor_class: type

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # video_processor is left out of this signature: transformers reads a processor's
        # sub-processors from its __init__ parameters, so none is built, saved or required
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)
        self.video_processor = None

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs):  # type: ignore[override]
        """Load tokenizer and image processor from a Hugging Face model directory."""
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        image_processor = cls.pil_image_processor_class.from_pretrained(str(path))
        chat_template = getattr(tokenizer, "chat_template", None)
        template_file = Path(path) / "chat_template.jinja"
        if template_file.exists():
            chat_template = template_file.read_text()
        extra = {}
        config_file = Path(path) / "processor_config.json"
        if config_file.exists():
            accepted = set(inspect.signature(super(ImageOnlyProcessorMixin, cls).__init__).parameters)
            accepted -= {"self", "image_processor", "tokenizer", "video_processor", "chat_template", "kwargs"}
            extra = {k: v for k, v in json.loads(config_file.read_text()).items() if k in accepted}
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **extra)


def save_processor(processor, out_dir: str | Path) -> None:
    """Save ``processor`` so that both its image-only class and the stock processor load it (the
    backbone of its family writes the files the stock processor insists on, e.g. a video-processor
    config); a processor of no registered family is saved as it is."""
    from globe.models.backbones import backbone_for

    backbone = backbone_for(processor, default=None)
    if backbone is None:
        processor.save_pretrained(out_dir)
    else:
        backbone.save_processor(processor, out_dir)


def __getattr__(name: str):
    from globe.models.backbones import exported_name

    return exported_name(name, __name__)
