"""Learning-rate and Gumbel-temperature schedules: pure functions of the update count.

The trainer sets the learning rate of every parameter group from these each update, so the only
schedule state to checkpoint is the update count.
"""

from __future__ import annotations

import math


def polynomial_decay_lr(update: int, *, peak_lr: float, warmup_updates: int, total_updates: int,
                        end_lr: float = 0.0, power: float = 1.0) -> float:
    """Linear warmup to `peak_lr`, then polynomial decay to `end_lr` at `total_updates`.

    `update` counts the updates already done: update u (from 0) of the warmup runs at (u + 1) / warmup_updates of
    peak_lr, and update warmup_updates - 1 at the peak. power=1 is wav2vec 2.0's "warmup then linear decay".

    During the warmup this runs one update ahead of fairseq; from update warmup_updates on the two agree. fairseq's
    trainer sets the rate for update 0 before its first step (step_update(0): lr 0) and reaches the peak at its update
    warmup_updates. Its first step thus feeds the first gradient into Adam's moments but leaves the weights where
    they are; ours moves the weights from the first step on, by 1 / warmup_updates of the peak. The offset is kept:
    every documented run used it.
    """
    if warmup_updates > 0 and update < warmup_updates:
        return peak_lr * (update + 1) / warmup_updates
    if update >= total_updates:
        return end_lr
    remaining = 1.0 - (update - warmup_updates) / max(1, total_updates - warmup_updates)
    return end_lr + (peak_lr - end_lr) * remaining**power


def tri_stage_lr(update: int, *, peak_lr: float, total_updates: int,
                 phase_ratio: tuple[float, float, float] = (0.1, 0.4, 0.5),
                 init_lr_scale: float = 0.01, final_lr_scale: float = 0.05) -> float:
    """Fine-tuning schedule: linear warmup from lr·init_scale, hold at lr, exponential decay to lr·final_scale.

    Phase lengths are `phase_ratio` × `total_updates` (fairseq `tri_stage`); after the decay phase the
    rate stays at lr·final_lr_scale.
    """
    warmup = int(phase_ratio[0] * total_updates)
    hold = int(phase_ratio[1] * total_updates)
    decay = int(phase_ratio[2] * total_updates)
    init_lr = peak_lr * init_lr_scale
    final_lr = peak_lr * final_lr_scale
    if update < warmup:
        return init_lr + (peak_lr - init_lr) * update / warmup
    update -= warmup
    if update < hold:
        return peak_lr
    update -= hold
    if update < decay:
        # exp(-k·t) with k chosen so that the rate reaches final_lr at the end of the phase
        k = -math.log(final_lr_scale) / decay
        return peak_lr * math.exp(-k * update)
    return final_lr


def constant_lr(update: int, *, peak_lr: float, warmup_updates: int = 0) -> float:
    """Linear warmup (first update at peak_lr / warmup_updates), then constant."""
    if warmup_updates > 0 and update < warmup_updates:
        return peak_lr * (update + 1) / warmup_updates
    return peak_lr


def gumbel_temperature(update: int, max_temp: float, min_temp: float, decay: float) -> float:
    """wav2vec 2.0's Gumbel-softmax temperature: τ(u) = max(τ_max · decay^u, τ_min)."""
    return max(max_temp * decay**update, min_temp)


def learning_rate(cfg, update: int) -> float:
    """The learning rate for `update` under a TrainerConfig's schedule (`lr_schedule` and its settings)."""
    warmup = cfg.warmup_updates if cfg.warmup_updates is not None else int(cfg.warmup_ratio * cfg.max_updates)
    if cfg.lr_schedule == "polynomial":
        return polynomial_decay_lr(update, peak_lr=cfg.lr, warmup_updates=warmup, total_updates=cfg.max_updates,
                                   end_lr=cfg.end_lr, power=cfg.lr_power)
    if cfg.lr_schedule == "tri_stage":
        return tri_stage_lr(update, peak_lr=cfg.lr, total_updates=cfg.max_updates,
                            phase_ratio=tuple(cfg.phase_ratio), init_lr_scale=cfg.init_lr_scale,
                            final_lr_scale=cfg.final_lr_scale)
    return constant_lr(update, peak_lr=cfg.lr, warmup_updates=warmup)
