"""HFExport writes Hugging Face directories that load back to the trained weights: merged LoRA
equals peft's own ``merge_and_unload``, the adapter alone reloads through peft, and the trained
model is left as it was."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
from peft import PeftModel
from transformers import Qwen2_5_VLForConditionalGeneration

from callbacks.hf_export import HFExport
from globe.models.loading import LoraConfigSpec, load_vlm


def test_lora_exports_merged_and_as_an_adapter(tmp_path, tiny_model_dir):
    model, processor = load_vlm(tiny_model_dir, dtype="float32", lora=LoraConfigSpec(r=4, alpha=8))
    with torch.no_grad():  # peft starts B at zero: a non-zero update so the merge matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    module, trainer = SimpleNamespace(model=model, processor=processor), SimpleNamespace(is_global_zero=True)
    HFExport(str(tmp_path / "merged")).on_fit_end(trainer, module)
    HFExport(str(tmp_path / "adapter"), merge_lora=False).on_fit_end(trainer, module)

    merged = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "merged").state_dict()
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[k], expected[k]) for k in expected)
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").merge_and_unload().state_dict()
    assert all(torch.equal(reloaded[k], expected[k]) for k in expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # not merged in place
    assert (tmp_path / "merged" / "preprocessor_config.json").exists()


def test_only_rank_zero_writes_an_unsharded_model(tmp_path, tiny_model_dir):
    model, processor = load_vlm(tiny_model_dir, dtype="float32")
    HFExport(str(tmp_path / "out")).on_fit_end(SimpleNamespace(is_global_zero=False), SimpleNamespace(model=model))
    assert not (tmp_path / "out").exists()
