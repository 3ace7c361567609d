"""The optimizer every task trains with: AdamW, weight decay on weight matrices only."""

from __future__ import annotations

import torch
from torch import nn

# The weight-norm magnitude g of the positional convolution is a per-tap scale of shape (1, 1, k): 3-d, so
# the ndim rule alone would decay it, shrinking the positional signal towards zero for no regularising gain.
WEIGHT_NORM_MAGNITUDE = "parametrizations.weight.original0"


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Parameters kept out of weight decay: biases and norms (1-d), weight-norm gains, the mask embedding and
    the codebook."""
    return param.ndim < 2 or any(k in name for k in ("mask_embedding", "codevectors", "norm", WEIGHT_NORM_MAGNITUDE))


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, with `cfg.weight_decay` (a TrainerConfig) on the weight matrices only."""
    decay, skip = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (skip if no_weight_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": skip, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
