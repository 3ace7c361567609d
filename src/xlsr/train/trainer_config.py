"""The Trainer's settings: the part of every task's configuration that the generic loop reads."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from xlsr.errors import XlsrError


@dataclass
class TrainerConfig:
    """Settings of the generic loop, the Trainer's part of every task's configuration.

    A task's configuration is flat for the user (one namespace of YAML keys and --options, one RUN/config.yaml)
    and extends this class with its data and model-source fields; the Trainer gets `trainer_config()`, a
    TrainerConfig of exactly these fields, and never the task's.
    """

    out: str = ""  # run folder (checkpoints, logs, config.yaml); re-running on it resumes
    max_updates: int = 1000  # optimizer updates to train for (the run's length)
    # --- learning rate
    lr: float = 5e-4  # peak learning rate
    # polynomial: warmup, then decay to end_lr; tri_stage: warmup, hold, decay (phase_ratio); constant: after warmup
    lr_schedule: Literal["polynomial", "tri_stage", "constant"] = "polynomial"
    warmup_updates: int | None = None  # polynomial/constant: updates of linear warmup (none: warmup_ratio's share)
    warmup_ratio: float = 0.08  # polynomial/constant: warmup as a share of max_updates (wav2vec 2.0: 8%)
    end_lr: float = 0.0  # polynomial: the learning rate reached at max_updates
    lr_power: float = 1.0  # polynomial: power of the decay (1 = linear)
    phase_ratio: tuple[float, float, float] = (0.1, 0.4, 0.5)  # tri_stage: shares of max_updates: warmup, hold, decay
    init_lr_scale: float = 0.01  # tri_stage: warmup starts at lr * this
    final_lr_scale: float = 0.05  # tri_stage: decay ends at lr * this
    # --- optimizer: Adam with decoupled weight decay on weights only
    adam_betas: tuple[float, float] = (0.9, 0.98)  # Adam's decay rates of its moment estimates (beta1, beta2)
    adam_eps: float = 1e-6  # Adam's epsilon, added to the denominator
    weight_decay: float = 0.01  # decoupled (AdamW) weight decay on weight matrices; biases and norms get none
    clip_norm: float = 10.0  # max global gradient norm; 0 = no clipping
    # the CNN's learning rate is lr x this (its own parameter groups); 0.1 slows a CNN that collapses its features
    feature_encoder_lr_scale: float = 1.0
    head_lr_scale: float = 1.0  # a fine-tuned model's new output layer (lm_head) trains at lr x this
    update_freq: int = 1  # gradient accumulation: micro-batches per update
    # --- numerics and speed
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp32, or autocast in bf16 or fp16 (with loss scaling)
    compile: bool = False  # torch.compile the model (use bucketed crop lengths)
    activation_checkpointing: bool = False  # recompute CNN layers and blocks in backward: less memory, ~1/3 more compute
    device: str = "auto"  # where to train: auto (a CUDA GPU when there is one), cpu, cuda or cuda:N
    distributed: Literal["ddp", "fsdp"] = "ddp"  # under torchrun with >1 process: ddp (replicas) or fsdp (sharded)
    seed: int = 1  # random seed (weights, data order, masks)
    max_consecutive_nan: int = 10  # stop after this many non-finite steps in a row
    # fp16: overflowing steps halve the loss scale; below this the loss is exploding and the run stops (fairseq's)
    min_loss_scale: float = 1e-4
    # --- logs and checkpoints
    log_every: int = 10  # updates between log lines (log.jsonl, TensorBoard)
    valid_every: int = 1000  # updates between validations; 0 = only at the end
    save_every: int = 1000  # updates between checkpoints; 0 = only at the end (and on SIGINT/SIGTERM)
    keep_last: int = 2  # the newest checkpoints of the save_every grid kept (besides `best` and `last`)
    progress: bool = True  # show a progress bar, and a line per validation (log.jsonl holds them either way)
    tensorboard: bool = True  # write TensorBoard logs to RUN/tb/

    def __post_init__(self) -> None:
        check_at_least(self, max_updates=1, update_freq=1, log_every=1, valid_every=0, save_every=0, keep_last=0,
                       max_consecutive_nan=1, seed=0)  # seed: numpy's generators take no negative seed
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise XlsrError(f"warmup_ratio: must be between 0 and 1, got {self.warmup_ratio:g}")
        for key in ("feature_encoder_lr_scale", "head_lr_scale"):
            if getattr(self, key) < 0:
                raise XlsrError(f"{key}: must not be negative, got {getattr(self, key):g}")
        if not self.min_loss_scale > 0:
            raise XlsrError(f"min_loss_scale: must be positive, got {self.min_loss_scale:g}")
        if self.lr < 0 or self.clip_norm < 0:
            raise XlsrError(f"lr and clip_norm: must not be negative, got lr={self.lr:g}, clip_norm={self.clip_norm:g}")
        self._check_optimizer()

    def _check_optimizer(self) -> None:
        """Adam's and the schedule's settings, checked here: torch would refuse them only after the run folder is
        written, and a negative power or warmup would make a schedule climb instead of decay."""
        check_at_least(self, warmup_updates=0, adam_eps=0, weight_decay=0)
        if not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise XlsrError(f"adam_betas: each must be in [0, 1), got {', '.join(f'{b:g}' for b in self.adam_betas)}")
        if not self.lr_power > 0:
            raise XlsrError(f"lr_power: must be positive, got {self.lr_power:g}")
        self._check_schedule()

    def _check_schedule(self) -> None:
        """The decay targets and phases: unchecked, final_lr_scale 0 fails in log(0) at the first decay update (long
        after the run folder is written), above 1 or with end_lr above lr the rate climbs where it should fall, and
        a negative phase shifts the others (a warmup of -0.5 x max_updates starts the decay at once)."""
        if not 0.0 < self.final_lr_scale <= 1.0:
            raise XlsrError(f"final_lr_scale: must be in (0, 1] (the decay ends at lr x this), got "
                            f"{self.final_lr_scale:g}")
        if not 0.0 <= self.init_lr_scale <= 1.0:
            raise XlsrError(f"init_lr_scale: must be between 0 and 1 (the warmup starts at lr x this), got "
                            f"{self.init_lr_scale:g}")
        ratios = list(self.phase_ratio)
        shown = ", ".join(f"{r:g}" for r in ratios)
        if len(ratios) != 3:
            raise XlsrError(f"phase_ratio: must be 3 shares of max_updates (warmup, hold, decay), got {len(ratios)}: "
                            f"{shown}")
        # a little room for shares written as decimals (0.34 + 0.56 + 0.1 is 1.0000000000000002 in floats)
        if not all(r >= 0 for r in ratios) or not sum(ratios) <= 1.0 + 1e-9:
            raise XlsrError(f"phase_ratio: each share must be at least 0 and together at most 1, got {shown}")
        if not 0.0 <= self.end_lr <= self.lr:
            raise XlsrError(f"end_lr: must be between 0 and lr ({self.lr:g}), got {self.end_lr:g}")

    def trainer_config(self) -> TrainerConfig:
        """These settings alone, as a plain TrainerConfig (what a task's configuration hands the Trainer)."""
        return TrainerConfig(**{f.name: getattr(self, f.name) for f in fields(TrainerConfig)})


def check_at_least(cfg, **lows) -> None:
    """Each named setting of `cfg` at least its low bound (a setting that is None is unset and passes); the first
    that is not is one XlsrError line."""
    for key, low in lows.items():
        value = getattr(cfg, key)
        if value is not None and value < low:
            raise XlsrError(f"{key}: must be at least {low}, got {value}")
