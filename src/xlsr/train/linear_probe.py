"""Linear CTC probes: zero-initialised linear heads trained with CTC on frozen features, one head per view.

The one head-training loop of both probes: the short one of pretraining (train/probe_monitor.py) and the
layer-wise `xlsr probe` (analysis/probe.py). All heads train together on the same batches, one Adam over the sum
of their losses; each head's gradient comes from its own loss alone, so this is the same as training each alone.
The learning rate decays to 0 on a cosine over the run. The heads start at zero (a convex start) and nothing here
draws from a random generator: the batches' order is the caller's, so a probe is as deterministic as its batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import skip_init

from xlsr.model.ctc import ctc_loss


@dataclass
class HeadBatch:
    """One padded batch for the heads: a (B, T, D_h) tensor per head, valid frames and label ids."""

    features: list[torch.Tensor]  # one per head, in the heads' order
    frame_lengths: torch.Tensor  # (B,) long
    labels: torch.Tensor  # (B, L) long, padded with 0 (the blank, never a target)
    label_lengths: torch.Tensor  # (B,) long


def zero_heads(dims: list[int], vocab_size: int, device: torch.device | str = "cpu") -> nn.ModuleList:
    """One linear layer (D_h -> vocab) per view, all weights and biases 0."""
    # skip_init: nn.Linear's random initialisation would draw from the global generator a training run uses
    heads = nn.ModuleList(skip_init(nn.Linear, d, vocab_size, device=device) for d in dims)
    for head in heads:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return heads


def heads_ctc_loss(heads: nn.ModuleList, batch: HeadBatch) -> torch.Tensor:
    """(H,) CTC loss of each head on its own view's features (model.ctc.ctc_loss: fp32, blank 0, mean)."""
    device = next(heads.parameters()).device
    frames, labels, label_lengths = (t.to(device) for t in (batch.frame_lengths, batch.labels, batch.label_lengths))
    return torch.stack([ctc_loss(head(x.to(device).float()), frames, labels, label_lengths)
                        for head, x in zip(heads, batch.features)])


def train_heads(heads: nn.ModuleList, batches: Iterable[HeadBatch], *, lr: float,
                total_steps: int) -> Iterator[torch.Tensor]:
    """Adam on the sum of the heads' CTC losses, one step per batch, lr cosine-decayed to 0 over `total_steps`.

    A generator: it trains as the caller iterates and yields each step's (H,) losses, detached.
    """
    optimizer = torch.optim.Adam(heads.parameters(), lr=lr)
    for step, batch in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
        losses = heads_ctc_loss(heads, batch)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        yield losses.detach()
