"""Image-only Qwen2.5-VL processor.

The stock ``Qwen2_5_VLProcessor`` also builds a video processor, which needs torchvision; a CPU
torch with the registry's (CUDA) torchvision cannot import it. Geo-localisation only ever feeds
still images, so this subclass keeps the tokenizer and the PIL image processor
(``Qwen2VLImageProcessorPil``) and nothing else. The files it reads are the stock ones, so the
same directory also loads with the stock processor where torchvision works (vLLM does that).
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor (no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)
        self.video_processor = None

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "ImageOnlyQwen2_5_VLProcessor":  # type: ignore[override]
        """Load tokenizer and image processor from a Hugging Face model directory."""
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path))
        chat_template = getattr(tokenizer, "chat_template", None)
        template_file = Path(path) / "chat_template.jinja"
        if template_file.exists():
            chat_template = template_file.read_text()
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def save_processor(processor, out_dir: str | Path) -> None:
    """Save ``processor`` so that both this class and the stock ``Qwen2_5_VLProcessor`` load it.

    Writes the stock file set: tokenizer, ``preprocessor_config.json``, a video-processor config
    (the stock processor insists on one; vLLM uses the stock processor) and ``processor_class``
    set to ``Qwen2_5_VLProcessor``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(out)
    image_processor = processor.image_processor
    image_processor.save_pretrained(out)
    video = {
        "processor_class": "Qwen2_5_VLProcessor",
        "video_processor_type": "Qwen2VLVideoProcessor",
        "patch_size": image_processor.patch_size,
        "temporal_patch_size": image_processor.temporal_patch_size,
        "merge_size": image_processor.merge_size,
        "size": dict(image_processor.size),
        "image_mean": list(image_processor.image_mean),
        "image_std": list(image_processor.image_std),
    }
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = out / name
        if path.exists():
            cfg = json.loads(path.read_text())
            if "processor_class" in cfg:
                cfg["processor_class"] = "Qwen2_5_VLProcessor"
                path.write_text(json.dumps(cfg, indent=2))
