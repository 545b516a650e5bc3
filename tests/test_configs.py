"""Every YAML under configs/ parses through cli.py (``--print_config``), alone when it is a
complete run, else composed the way its header says (after a model config, with a data config)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _composition(path: Path) -> list[str]:
    content = yaml.safe_load(path.read_text()) or {}
    has_model_class = "class_path" in (content.get("model") or {})
    files = [] if has_model_class else [REPO / "configs/demo.yaml"]
    files.append(path)
    if "data" not in content and has_model_class:
        files.append(REPO / "configs/data/geosynth.yaml")
    return [arg for f in files for arg in ("--config", str(f))]


def _parse(args: list[str], capsys, monkeypatch=None) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info, pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["cli.py"])
        cli.main(["fit", *args, "--print_config"])
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out + out.err


def test_configs_exist():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    assert {"demo.yaml", "grpo/paper_qwen2_5_vl_7b.yaml", "reward/localizability.yaml", "test/im2gps3k.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_every_config_parses(path, capsys):
    code, output = _parse(_composition(path), capsys)
    assert code == 0, output[-3000:]
    resolved = yaml.safe_load(output)
    assert resolved["model"]["class_path"] and resolved["data"]["class_path"]


def test_paper_config_carries_the_paper_hyperparameters(capsys):
    code, output = _parse(["--config", str(REPO / "configs/grpo/paper_qwen2_5_vl_7b.yaml"),
                           "--config", str(REPO / "configs/data/mp16_reason.yaml")], capsys)
    assert code == 0, output
    args = yaml.safe_load(output)["model"]["init_args"]
    assert args["group_size"] == 16 and args["loss"]["beta"] == 0.001 and args["optim"]["learning_rate"] == 1e-6
    assert args["loss"]["epsilon"] == 0.2 and args["optim"]["num_iterations"] == 1 and args["warm_start"]["steps"] == 0
    assert args["sampling"] == {"temperature": 1.0, "top_p": 0.9, "top_k": 50, "max_new_tokens": 1024, "seed": None}
    assert args["eval_sampling"]["temperature"] == 0.1 and args["eval_sampling"]["max_new_tokens"] == 512
    assert args["reward_weights"] == {"geo": 1.0, "loc": 0.5, "vis": 0.2, "format": 1.0}
    assert args["engine"] == "vllm"
    # bf16 compute over float32 master weights sharded with FSDP2 (the paper: DeepSpeed ZeRO-3, bf16)
    assert args["dtype"] == "float32" and args["fsdp_compute_dtype"] == "bfloat16"
    trainer = yaml.safe_load(output)["trainer"]
    assert trainer["strategy"]["class_path"].endswith("ModelParallelStrategy")
    assert trainer["strategy"]["init_args"]["tensor_parallel_size"] == 1


def test_lora_config_leaves_sharding_for_ddp(capsys):
    code, output = _parse(["--config", str(REPO / "configs/grpo/paper_qwen2_5_vl_7b.yaml"),
                           "--config", str(REPO / "configs/grpo/lora.yaml"),
                           "--config", str(REPO / "configs/data/mp16_reason.yaml")], capsys)
    assert code == 0, output
    resolved = yaml.safe_load(output)
    assert resolved["trainer"]["strategy"] == "ddp"
    assert resolved["model"]["init_args"]["fsdp_compute_dtype"] is None
    assert resolved["model"]["init_args"]["lora"]["r"] == 64


def test_demo_switches_engine_with_one_line(capsys):
    code, output = _parse(["--config", str(REPO / "configs/demo.yaml"), "--model.init_args.engine=vllm"], capsys)
    assert code == 0 and yaml.safe_load(output)["model"]["init_args"]["engine"] == "vllm"


def test_a_misspelt_key_is_a_clear_error(capsys):
    code, output = _parse(["--config", str(REPO / "configs/demo.yaml"), "--model.init_args.grop_size=4"], capsys)
    assert code != 0
    assert "grop_size" in output


@pytest.mark.parametrize("objective,expected", [
    ("dapo", {"loss": {"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28, "mask_truncated_completions": True, "beta": 0.0},
              "dynamic_sampling": {"enabled": True, "max_tries": 3}}),
    ("gspo", {"loss": {"loss_type": "gspo", "epsilon": 3e-4, "epsilon_high": 4e-4}, "optim": {"num_iterations": 2}}),
])
def test_objective_configs_compose_on_the_demo(objective, expected, capsys):
    code, output = _parse(["--config", str(REPO / "configs/demo.yaml"), "--config", str(REPO / f"configs/grpo/{objective}.yaml")], capsys)
    assert code == 0, output
    args = yaml.safe_load(output)["model"]["init_args"]
    assert {group: {k: args[group][k] for k in keys} for group, keys in expected.items()} == expected
    demo = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["model"]["init_args"]
    # a group set in the objective's config merges key by key: the demo's other settings stay
    assert args["group_size"] == demo["group_size"] and args["warm_start"]["steps"] == demo["warm_start"]["steps"]
    assert args["loss"]["beta"] == demo["loss"]["beta"] and args["optim"]["learning_rate"] == demo["optim"]["learning_rate"]


def test_a_setting_of_no_group_is_a_clear_error(capsys):
    # the flat names of before the settings groups: refused, naming the key
    code, output = _parse(["--config", str(REPO / "configs/demo.yaml"), "--model.init_args.learning_rate=1e-3"], capsys)
    assert code != 0 and "learning_rate" in output
    # (values are checked when the groups are built: tests/test_grpo_settings.py)
