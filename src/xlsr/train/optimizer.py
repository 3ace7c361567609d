"""The optimizer every task trains with: AdamW, weight decay on weight matrices only, and optionally a smaller
learning rate for the CNN (each parameter group carries the `lr_scale` the Trainer multiplies its rate by)."""

from __future__ import annotations

import torch
from torch import nn

# The weight-norm magnitude g of the positional convolution is a per-tap scale of shape (1, 1, k): 3-d, so
# the ndim rule alone would decay it, shrinking the positional signal towards zero for no regularising gain.
WEIGHT_NORM_MAGNITUDE = "parametrizations.weight.original0"
FEATURE_ENCODER = "feature_encoder."  # the CNN's parameters, in every model that holds a Wav2Vec2Model


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Parameters kept out of weight decay: biases and norms (1-d), weight-norm gains, the mask embedding and
    the codebook."""
    return param.ndim < 2 or any(k in name for k in ("mask_embedding", "codevectors", "norm", WEIGHT_NORM_MAGNITUDE))


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, with `cfg.weight_decay` (a TrainerConfig) on the weight matrices only.

    With `cfg.feature_encoder_lr_scale` != 1 the CNN's parameters get groups of their own whose `lr_scale` is that
    factor (the Trainer sets each group's rate to the schedule's rate times its `lr_scale`). Adam normalises a
    gradient's scale away, so `feature_grad_mult` cannot slow the CNN down; this does. At 1 the groups are the two
    of earlier versions, so their checkpoints' optimizer states still load.
    """
    scale = float(getattr(cfg, "feature_encoder_lr_scale", 1.0))
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            in_cnn = scale != 1.0 and FEATURE_ENCODER in name
            groups.setdefault((in_cnn, no_weight_decay(name, p)), []).append(p)
    param_groups = []
    for in_cnn in (False, True):
        for skip in (False, True):
            params = groups.get((in_cnn, skip), [])
            if in_cnn and not params:  # the CNN's groups exist only when it trains at its own rate
                continue
            param_groups.append({"params": params, "weight_decay": 0.0 if skip else cfg.weight_decay,
                                 "lr_scale": scale if in_cnn else 1.0})
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate for this update into every parameter group, times the group's own `lr_scale`."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
