"""Save the trained policy as a plain Hugging Face directory at the end of ``fit``.

Lightning checkpoints hold the whole module (optimiser state included); users also want a model
directory that ``from_pretrained``, vLLM or another ``cli.py fit`` (``model_path``) can load. The
weights written are those the vLLM weight sync sends (``globe.rollout.vllm_weights.hf_named_weights``):
LoRA adapters merged into the base weights per layer, without copying or changing the trained
model. With ``merge_lora`` false the adapter alone is saved, peft's format.

Under FSDP2 (``ModelParallelStrategy``) every rank takes part: the weights are gathered one tensor
at a time and rank 0 writes them.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from globe.models.processor import save_processor
from globe.models.sharding import full_tensor, is_sharded
from globe.rollout.vllm_weights import hf_named_weights


class HFExport(Callback):
    def __init__(self, dirpath: str = "artifacts/policy-final", merge_lora: bool = True) -> None:
        self.dirpath = dirpath
        self.merge_lora = merge_lora

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model = pl_module.model
        # FSDP2: gathering is collective, so every rank takes part; otherwise rank 0 alone
        if not (trainer.is_global_zero or is_sharded(model)):
            return
        is_peft = hasattr(model, "merge_and_unload")
        if is_peft and not self.merge_lora:  # peft keeps the adapter entries of the state dict
            target, state_dict = model, {k: full_tensor(v).cpu() for k, v in model.state_dict().items()}
        else:  # merged LoRA layers under the base checkpoint names, the model left untouched
            target = model.get_base_model() if is_peft else model
            state_dict = {name: t.cpu() for name, t in hf_named_weights(model)}
        if not trainer.is_global_zero:
            return
        out = Path(self.dirpath)
        out.mkdir(parents=True, exist_ok=True)
        target.save_pretrained(out, state_dict=state_dict)
        processor = getattr(pl_module, "processor", None)
        if processor is not None:
            save_processor(processor, out)
