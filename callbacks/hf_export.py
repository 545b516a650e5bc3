"""Save the trained policy as a plain Hugging Face directory at the end of ``fit``.

Lightning checkpoints hold the whole module (optimiser state included); users also want a model
directory that ``from_pretrained``, vLLM or another ``cli.py fit`` (``model_path``) can load. LoRA
adapters are merged into the base weights unless ``merge_lora`` is false (then the adapter alone
is saved, peft's format).

Under FSDP2 (``ModelParallelStrategy``) every rank takes part: the weights are gathered one tensor
at a time (merged LoRA layers included, ``globe.rollout.vllm_weights.hf_named_weights``, the same
names the vLLM weight sync sends) and rank 0 writes them.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from globe.models.processor import save_processor
from globe.models.sharding import full_tensor, is_sharded


class HFExport(Callback):
    def __init__(self, dirpath: str = "artifacts/policy-final", merge_lora: bool = True) -> None:
        self.dirpath = dirpath
        self.merge_lora = merge_lora

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model = pl_module.model
        is_peft = hasattr(model, "merge_and_unload")
        state_dict = None
        if is_sharded(model):  # collective: every rank gathers, rank 0 writes
            if is_peft and not self.merge_lora:
                state_dict = {k: full_tensor(v).cpu() for k, v in model.state_dict().items()}
            else:
                from globe.rollout.vllm_weights import hf_named_weights

                state_dict = {name: t.cpu() for name, t in hf_named_weights(model)}
                model = model.get_base_model() if is_peft else model
                is_peft = False
        if not trainer.is_global_zero:
            return
        out = Path(self.dirpath)
        out.mkdir(parents=True, exist_ok=True)
        if state_dict is not None:
            model.save_pretrained(out, state_dict=state_dict)
        else:
            if self.merge_lora and is_peft:
                import copy

                model = copy.deepcopy(model).merge_and_unload()
            model.save_pretrained(out)
        processor = getattr(pl_module, "processor", None)
        if processor is not None:
            save_processor(processor, out)
