"""Phased learning-rate schedule: hand-worked values, phase boundaries, exact resume."""

from __future__ import annotations

import io
import math

import pytest
import torch

from globe.grpo.lr_schedule import LRPhase, build_scheduler, lr_at, total_steps


def _optimizer(groups: int = 1, lr: float = 0.1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(groups)]
    return torch.optim.AdamW(params, lr=lr)


def test_warmup_hand_worked():
    # peak 1e-3 over 4 warm-up steps: (s + 1) / 4 of the peak, the first step is not 0
    phases = [LRPhase(steps=10, peak_lr=1e-3, warmup_steps=4)]
    assert [lr_at(s, phases) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3], rel=1e-12)
    # constant after the warm-up
    assert [lr_at(s, phases) for s in range(4, 10)] == [1e-3] * 6


def test_cosine_hand_worked():
    # warm-up 2, then 5 decay steps (2..6): p = 0, 1/4, 1/2, 3/4, 1
    phase = LRPhase(steps=7, peak_lr=1e-3, warmup_steps=2, decay="cosine", min_lr_ratio=0.1)
    lrs = [lr_at(s, [phase]) for s in range(7)]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3], rel=1e-12)
    assert lrs[2] == 1e-3  # decay starts exactly at the peak
    # f = (1 + cos(pi / 4)) / 2 = 0.853553..., lr = f * 1e-3 + (1 - f) * 1e-4
    assert lrs[3] == pytest.approx(1e-4 + 9e-4 * (1 + math.sqrt(0.5)) / 2, rel=1e-12)
    assert lrs[4] == pytest.approx(5.5e-4, rel=1e-15)  # half-way: the mid value of 1e-3 and 1e-4
    assert lrs[5] == pytest.approx(1e-4 + 9e-4 * (1 - math.sqrt(0.5)) / 2, rel=1e-12)
    assert lrs[6] == 1e-4  # exactly min at the last step


def test_cosine_half_way_is_exactly_the_mid_value_without_floor():
    phase = LRPhase(steps=5, peak_lr=1e-3, decay="cosine")  # p = 0, 1/4, 1/2, 3/4, 1
    assert lr_at(2, [phase]) == 5e-4
    assert lr_at(0, [phase]) == 1e-3 and lr_at(4, [phase]) == 0.0


def test_linear_hand_worked():
    # no warm-up: 6 steps from 2e-3 to 0.5 x peak = 1e-3 in steps of 2e-4
    phase = LRPhase(steps=6, peak_lr=2e-3, decay="linear", min_lr_ratio=0.5)
    assert [lr_at(s, [phase]) for s in range(6)] == pytest.approx([2e-3, 1.8e-3, 1.6e-3, 1.4e-3, 1.2e-3, 1e-3], rel=1e-12)
    assert lr_at(5, [phase]) == 1e-3


def test_single_decay_step_is_the_minimum():
    # warm-up 3 of 4 steps: steps 0..2 warm up, the one decay step is the last and ends on min
    phase = LRPhase(steps=4, peak_lr=3e-3, warmup_steps=3, decay="linear", min_lr_ratio=0.25)
    assert [lr_at(s, [phase]) for s in range(4)] == pytest.approx([1e-3, 2e-3, 3e-3, 7.5e-4], rel=1e-12)


def test_warmup_only_phase_ends_at_peak():
    phase = LRPhase(steps=2, peak_lr=1e-3, warmup_steps=2, decay="cosine")
    assert [lr_at(s, [phase]) for s in range(4)] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3], rel=1e-12)


def test_phase_boundaries_and_hold_past_the_end():
    warm = LRPhase(steps=3, peak_lr=1e-4, decay="linear", min_lr_ratio=0.0)  # 1e-4, 5e-5, 0
    grpo = LRPhase(steps=4, peak_lr=1e-6, warmup_steps=2, decay="linear", min_lr_ratio=0.5)
    phases = [warm, grpo]
    assert total_steps(phases) == 7
    got = [lr_at(s, phases) for s in range(10)]
    # grpo: warm-up 5e-7, 1e-6; decay over 2 steps: 1e-6, then min 5e-7; held after step 6
    want = [1e-4, 5e-5, 0.0, 5e-7, 1e-6, 1e-6, 5e-7, 5e-7, 5e-7, 5e-7]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert lr_at(10**9, phases) == pytest.approx(5e-7, rel=1e-12)


def test_zero_step_phases_are_skipped():
    a = LRPhase(steps=2, peak_lr=1.0)
    off = LRPhase(steps=0, peak_lr=5.0)  # switched off: never used
    b = LRPhase(steps=2, peak_lr=3.0)
    assert [lr_at(s, [off, a, off, b, off]) for s in range(6)] == [1.0, 1.0, 3.0, 3.0, 3.0, 3.0]
    # a trailing phase with no steps does not change the held value
    assert lr_at(100, [a, off]) == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=-1, peak_lr=1e-3), "steps must be >= 0"),
        (dict(steps=3, peak_lr=1e-3, warmup_steps=4), "exceeds"),
        (dict(steps=3, peak_lr=1e-3, warmup_steps=-1), "warmup_steps must be >= 0"),
        (dict(steps=3.0, peak_lr=1e-3), "must be an integer"),
        (dict(steps=3, peak_lr=-1e-3), "peak_lr must be >= 0"),
        (dict(steps=3, peak_lr=float("nan")), "finite"),
        (dict(steps=3, peak_lr=1e-3, decay="cosine", min_lr_ratio=1.5), r"\[0, 1\]"),
        (dict(steps=3, peak_lr=1e-3, decay="step"), "decay must be one of"),
        (dict(steps=3, peak_lr=1e-3, min_lr_ratio=0.1), "no effect"),
    ],
)
def test_phase_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LRPhase(**kwargs)


def test_schedule_validation():
    with pytest.raises(ValueError, match="at least one"):
        lr_at(0, [])
    with pytest.raises(ValueError, match="steps=0"):
        lr_at(0, [LRPhase(0, 1e-3)])
    with pytest.raises(ValueError, match="single LRPhase"):
        lr_at(0, LRPhase(3, 1e-3))
    with pytest.raises(ValueError, match=r"phases\[1\]"):
        lr_at(0, [LRPhase(3, 1e-3), {"steps": 3}])
    with pytest.raises(ValueError, match="step must be"):
        lr_at(-1, [LRPhase(3, 1e-3)])


PHASES = [
    LRPhase(steps=5, peak_lr=1e-3, warmup_steps=2, decay="cosine", min_lr_ratio=0.1),
    LRPhase(steps=6, peak_lr=2e-6, warmup_steps=1, decay="linear", min_lr_ratio=0.0),
]


def test_optimizer_lr_equals_lr_at_every_step():
    opt = _optimizer(groups=2, lr=0.5)  # the configured lr is replaced by the schedule
    sched = build_scheduler(opt, PHASES)
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    for step in range(14):
        for group in opt.param_groups:
            assert group["lr"] == lr_at(step, PHASES)  # exact, not approximately
        assert sched.get_last_lr() == [lr_at(step, PHASES)] * 2
        opt.step()
        sched.step()


def _run(opt, sched, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("k", [0, 1, 4, 5, 9, 11, 13])
def test_state_round_trip_resumes_exactly(k):
    opt = _optimizer()
    uninterrupted = _run(opt, build_scheduler(opt, PHASES), 14)

    opt = _optimizer()
    sched = build_scheduler(opt, PHASES)
    first = _run(opt, sched, k)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # numbers and strings only: no pickled objects

    # rebuilt from the configuration, optimiser state NOT loaded: the scheduler alone restores the lr
    opt2 = _optimizer(lr=0.1)
    sched2 = build_scheduler(opt2, PHASES)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == k
    assert opt2.param_groups[0]["lr"] == lr_at(k, PHASES)
    assert first + _run(opt2, sched2, 14 - k) == uninterrupted


def test_optimizer_state_loaded_first_then_scheduler():
    # Lightning's order on resume: optimiser state, then scheduler state
    opt = _optimizer()
    sched = build_scheduler(opt, PHASES)
    _run(opt, sched, 6)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    rest = _run(opt, sched, 5)

    opt2 = _optimizer()
    sched2 = build_scheduler(opt2, PHASES)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    assert _run(opt2, sched2, 5) == rest


def test_changed_schedule_warns_on_load():
    opt = _optimizer()
    sched = build_scheduler(opt, PHASES)
    _run(opt, sched, 3)
    state = sched.state_dict()
    other = [LRPhase(steps=10, peak_lr=1e-4)]
    opt2 = _optimizer()
    sched2 = build_scheduler(opt2, other)
    with pytest.warns(UserWarning, match="schedule changed"):
        sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == 1e-4 and sched2.last_epoch == 3


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_lightning_checkpoint_resume(tmp_path):
    """A real Trainer: fit 4 steps, checkpoint, resume to 9; the lrs equal an uninterrupted run."""
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.lrs: list[float] = []

        def training_step(self, batch, batch_idx):
            self.lrs.append(self.optimizers().param_groups[0]["lr"])
            return self.layer(batch).pow(2).mean()

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.ones(64, 2), batch_size=2)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": build_scheduler(opt, PHASES), "interval": "step"}}

    kw = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    full = Tiny()
    L.Trainer(max_steps=9, default_root_dir=tmp_path / "full", enable_checkpointing=False, **kw).fit(full)

    first = Tiny()
    trainer = L.Trainer(max_steps=4, default_root_dir=tmp_path / "a", enable_checkpointing=False, **kw)
    trainer.fit(first)
    ckpt = tmp_path / "step4.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = Tiny()
    L.Trainer(max_steps=9, default_root_dir=tmp_path / "b", enable_checkpointing=False, **kw).fit(resumed, ckpt_path=ckpt)

    assert full.lrs == [lr_at(s, PHASES) for s in range(9)]
    assert first.lrs + resumed.lrs == full.lrs
