"""Activation checkpointing of one layer: keep its inputs only, run it again in backward."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def run_layer(layer: nn.Module, *inputs, recompute: bool) -> torch.Tensor:
    """`layer(*inputs)`; with `recompute` and grad enabled, through non-reentrant torch.utils.checkpoint, which
    replays the dropout draws in backward, so the result and the gradients are those of the plain call."""
    if recompute and torch.is_grad_enabled():
        return checkpoint(layer, *inputs, use_reentrant=False)
    return layer(*inputs)
