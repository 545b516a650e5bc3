"""Save the trained policy as a plain Hugging Face directory at the end of ``fit``.

Lightning checkpoints hold the whole module (optimiser state included); users also want a model
directory that ``from_pretrained``, vLLM or another ``cli.py fit`` (``model_path``) can load. LoRA
adapters are merged into the base weights unless ``merge_lora`` is false (then the adapter alone
is saved, peft's format).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from globe.models.processor import save_processor


class HFExport(Callback):
    def __init__(self, dirpath: str = "artifacts/policy-final", merge_lora: bool = True) -> None:
        self.dirpath = dirpath
        self.merge_lora = merge_lora

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        model = pl_module.model
        out = Path(self.dirpath)
        out.mkdir(parents=True, exist_ok=True)
        if self.merge_lora and hasattr(model, "merge_and_unload"):
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(out)
        processor = getattr(pl_module, "processor", None)
        if processor is not None:
            save_processor(processor, out)
