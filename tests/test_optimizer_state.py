"""Fresh AdamW moments at the warm-start -> GRPO switch (``globe.grpo.optimizer_state``)."""

from __future__ import annotations

import pytest
import torch

from globe.grpo.optimizer_state import reset_optimizer_state


def _adamw(lr: float = 0.1) -> tuple[torch.nn.Parameter, torch.optim.AdamW]:
    p = torch.nn.Parameter(torch.tensor([0.0]))
    return p, torch.optim.AdamW([p], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def _step(p, opt, grad: float) -> float:
    before = float(p)
    p.grad = torch.tensor([grad])
    opt.step()
    return float(p) - before


def test_kept_moments_shrink_a_small_gradient_and_a_reset_restores_the_full_step():
    p, opt = _adamw()
    for _ in range(20):  # "warm start": gradients of 10
        _step(p, opt, 10.0)
    # first update of a fresh AdamW: m_hat = g, v_hat = g^2 -> step = -lr * g / |g| = -0.1
    # (up to eps = 1e-8 against |g| = 0.1)
    assert reset_optimizer_state(opt) == 1
    assert opt.state == {} or len(opt.state) == 0
    delta = _step(p, opt, 0.1)
    assert delta == pytest.approx(-0.1, rel=1e-6)
    assert int(opt.state[p]["step"]) == 1  # bias correction restarted


def test_without_a_reset_the_same_small_gradient_moves_the_weight_much_less():
    p, opt = _adamw()
    for _ in range(20):
        _step(p, opt, 10.0)
    for _ in range(10):  # ten small gradients: m forgets the 10s (0.9^10 = 0.35), v does not (0.999^10)
        delta = _step(p, opt, -0.1)
    # m_hat ~ (0.35 * 10 ... ) is still positive-dominated, so the step still goes DOWN, against
    # the new gradient's sign: a fresh optimiser would move up by lr = 0.1 at once
    assert delta < 0.0


def test_the_learning_rate_and_groups_are_kept_and_wrappers_are_unwrapped():
    p, opt = _adamw(lr=0.25)
    _step(p, opt, 1.0)

    class Wrapper:  # Lightning's LightningOptimizer exposes the torch optimizer as .optimizer
        optimizer = opt

    assert reset_optimizer_state(Wrapper()) == 1
    assert opt.param_groups[0]["lr"] == 0.25 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(TypeError, match="torch optimizer"):
        reset_optimizer_state(object())


@pytest.mark.slow
@pytest.mark.parametrize("reset", [True, False])
def test_the_policy_resets_adamw_at_the_first_grpo_step_when_asked(tmp_path, tiny_model_dir, geosynth_root, reset):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    argv = [
        sys.executable, str(repo / "cli.py"), "fit", "--config", str(repo / "configs/demo.yaml"),
        f"--model.init_args.model_path={tiny_model_dir}", "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=8", "--model.init_args.eval_sampling.max_new_tokens=8",
        "--model.init_args.warm_start.steps=3", f"--model.init_args.warm_start.reset_optimizer={str(reset).lower()}",
        f"--data.init_args.root={geosynth_root}", "--data.init_args.train_size=48", "--data.init_args.val_size=8",
        "--data.init_args.test_size=8", "--data.init_args.batch_size=2",
        "--trainer.max_steps=5", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        f"--trainer.default_root_dir={run}", "--trainer.callbacks=[]",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={run}/ckpt", "--trainer.callbacks.save_last=true",
    ]
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)["optimizer_states"][0]["state"]
    steps = {int(s["step"]) for s in state.values()}
    # 3 warm-start steps then 2 GRPO steps: AdamW's step counter restarted at the switch, or ran on
    assert steps == ({2} if reset else {5})
