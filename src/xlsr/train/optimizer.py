"""The optimizer every task trains with: AdamW, weight decay on weight matrices only, and optionally a rate of
their own for the CNN and for a new output layer (each parameter group carries the `lr_scale` the Trainer
multiplies the schedule's rate by). It runs as torch's fused kernel where it can (`fused_adamw_applies`)."""

from __future__ import annotations

import torch
from torch import nn

# The weight-norm magnitude g of the positional convolution is a per-tap scale of shape (1, 1, k): 3-d, so
# the ndim rule alone would decay it, shrinking the positional signal towards zero for no regularising gain.
WEIGHT_NORM_MAGNITUDE = "parametrizations.weight.original0"
# Parts of a model that can train at their own rate: (name fragment, TrainerConfig field holding the factor)
LR_SCALED_PARTS = (("feature_encoder.", "feature_encoder_lr_scale"),  # the CNN
                   ("lm_head.", "head_lr_scale"))  # a fine-tuned model's new output layer


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Parameters kept out of weight decay: biases and norms (1-d), weight-norm gains, the mask embedding and
    the codebook."""
    return param.ndim < 2 or any(k in name for k in ("mask_embedding", "codevectors", "norm", WEIGHT_NORM_MAGNITUDE))


def lr_scale(name: str, cfg) -> float:
    """The factor on the schedule's rate for parameter `name`: its part's `*_lr_scale` setting, else 1."""
    for fragment, key in LR_SCALED_PARTS:
        if fragment in name:
            return float(getattr(cfg, key, 1.0))
    return 1.0


# Devices torch's fused AdamW kernel serves (one kernel per parameter group instead of ~10 ops per tensor).
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def fused_adamw_applies(params: list[nn.Parameter]) -> bool:
    """Whether every parameter is a floating-point tensor on a device of FUSED_ADAMW_DEVICES.

    transformers' Trainer uses the fused kernel by default with torch >= 2.8; the per-tensor loop that
    torch.optim.AdamW runs on the CPU otherwise took 400 ms per step for the `base` preset's 95M parameters
    against 116 ms fused (one thread; benchmarks/optimizer_step.py, docs/speed.md). The two differ in the last bits
    of a float (the kernel orders its arithmetic differently), not in the update rule.
    """
    return bool(params) and all(p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for p in params)


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, with `cfg.weight_decay` (a TrainerConfig) on the weight matrices only.

    A part whose `*_lr_scale` (LR_SCALED_PARTS) is not 1 gets parameter groups of their own carrying that
    `lr_scale`; the Trainer sets each group's rate to the schedule's rate times it. Adam normalises a gradient's
    scale away, so `feature_grad_mult` cannot slow the CNN down; `feature_encoder_lr_scale` does. The first two
    groups are always the two of earlier versions (scale 1), so their checkpoints' optimizer states still load.
    """
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {(1.0, False): [], (1.0, True): []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((lr_scale(name, cfg), no_weight_decay(name, p)), []).append(p)
    param_groups = [{"params": params, "weight_decay": 0.0 if skip else cfg.weight_decay, "lr_scale": scale}
                    for (scale, skip), params in groups.items()]
    fused = fused_adamw_applies([p for params in groups.values() for p in params])
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                             fused=fused or None)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate for this update into every parameter group, times the group's own `lr_scale`."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
