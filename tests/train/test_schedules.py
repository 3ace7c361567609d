import math

import pytest

from xlsr.train.schedules import (
    constant_lr,
    gumbel_temperature,
    learning_rate,
    polynomial_decay_lr,
    tri_stage_lr,
)
from xlsr.train.trainer import TrainerConfig


def test_polynomial_warmup_then_linear_decay():
    kw = dict(peak_lr=1e-3, warmup_updates=10, total_updates=110)
    assert polynomial_decay_lr(0, **kw) == pytest.approx(1e-4)  # the first update already moves
    assert polynomial_decay_lr(4, **kw) == pytest.approx(5e-4)
    assert polynomial_decay_lr(9, **kw) == pytest.approx(1e-3)
    assert polynomial_decay_lr(10, **kw) == pytest.approx(1e-3)
    assert polynomial_decay_lr(60, **kw) == pytest.approx(5e-4)  # halfway through the decay
    assert polynomial_decay_lr(110, **kw) == 0.0
    assert polynomial_decay_lr(500, **kw) == 0.0
    assert polynomial_decay_lr(60, **kw, end_lr=1e-4) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert polynomial_decay_lr(60, **kw, power=2.0) == pytest.approx(1e-3 * 0.25)


def test_polynomial_warmup_runs_one_update_ahead_of_fairseqs():
    """fairseq 0.12.2's trainer calls step_update(0) before its first step and step_update(n) after update n, with
    PolynomialDecayLRSchedule's rate n / W · peak during the warmup: its update u (from 0) runs at u / W."""
    W, T = 4, 10

    def fairseq(u):  # the rate fairseq's optimizer step of update u runs at
        return u / W if u <= W else 1 - (u - W) / (T - W)

    ours = [polynomial_decay_lr(u, peak_lr=1.0, warmup_updates=W, total_updates=T) for u in range(T)]
    assert ours[:W] == pytest.approx([fairseq(u + 1) for u in range(W)])  # one update ahead
    assert fairseq(0) == 0.0  # fairseq's first step moves Adam's moments, not the weights
    assert ours[W:] == pytest.approx([fairseq(u) for u in range(W, T)])  # the same from the peak's update W on


def test_tri_stage_phases_and_exponential_decay():
    kw = dict(peak_lr=1e-3, total_updates=100, phase_ratio=(0.1, 0.4, 0.5), init_lr_scale=0.01,
              final_lr_scale=0.05)
    assert tri_stage_lr(0, **kw) == pytest.approx(1e-5)
    assert tri_stage_lr(5, **kw) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert tri_stage_lr(10, **kw) == pytest.approx(1e-3)
    assert tri_stage_lr(49, **kw) == pytest.approx(1e-3)
    # exponential: halfway through the decay the rate is lr * sqrt(final_scale)
    assert tri_stage_lr(75, **kw) == pytest.approx(1e-3 * math.sqrt(0.05))
    assert tri_stage_lr(99, **kw) == pytest.approx(1e-3 * 0.05 ** (49 / 50))
    assert tri_stage_lr(100, **kw) == pytest.approx(5e-5)
    assert tri_stage_lr(1000, **kw) == pytest.approx(5e-5)


def test_constant_with_warmup():
    assert constant_lr(1, peak_lr=1.0, warmup_updates=4) == 0.5
    assert constant_lr(40, peak_lr=1.0, warmup_updates=4) == 1.0


def test_gumbel_temperature_matches_wav2vec2_numbers():
    assert gumbel_temperature(0, 2.0, 0.5, 0.999995) == 2.0
    assert gumbel_temperature(1000, 2.0, 0.5, 0.999995) == pytest.approx(2.0 * 0.999995**1000)
    # spec §3: tau reaches 0.5 after ~277k updates and 0.1 after ~599k
    assert gumbel_temperature(276_000, 2.0, 0.5, 0.999995) > 0.5
    assert gumbel_temperature(278_000, 2.0, 0.5, 0.999995) == 0.5
    assert gumbel_temperature(598_000, 2.0, 0.1, 0.999995) > 0.1
    assert gumbel_temperature(600_000, 2.0, 0.1, 0.999995) == 0.1


def test_trainer_schedule_selection_uses_warmup_ratio():
    cfg = TrainerConfig(lr=1e-3, max_updates=100, warmup_ratio=0.1)
    assert learning_rate(cfg, 4) == pytest.approx(5e-4)
    assert learning_rate(cfg, 55) == pytest.approx(5e-4)
    cfg = TrainerConfig(lr=1e-3, max_updates=100, lr_schedule="tri_stage")
    assert learning_rate(cfg, 30) == pytest.approx(1e-3)
