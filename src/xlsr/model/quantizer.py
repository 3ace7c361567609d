"""Gumbel product quantizer: G codebooks of V entries; straight-through hard Gumbel-softmax in training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xlsr.model.config import Wav2Vec2Config
from xlsr.model.losses import perplexity


@dataclass
class QuantizerOutput:
    """Quantized vectors and the codebook statistics of one batch of frames."""

    quantized: torch.Tensor  # (N, codevector_dim), fp32
    codes: torch.Tensor  # (N, G) long: chosen entry per group
    prob_perplexity: torch.Tensor  # sum_g exp(H(mean softmax)), noise- and temperature-free, 0..G*V
    code_perplexity: torch.Tensor  # same from the noise-free hard choices (argmax of the logits)


def gumbel_noise(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel samples -log(E), E ~ Exp(1)."""
    return -torch.empty(shape, dtype=like.dtype, device=like.device).exponential_(generator=generator).log()


class GumbelVectorQuantizer(nn.Module):
    """Maps C-dim features to codevector_dim: per group, one of V entries of size codevector_dim / G."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        G, V = config.num_codevector_groups, config.num_codevectors_per_group
        self.num_groups, self.num_vars = G, V
        self.codevectors = nn.Parameter(torch.rand(1, G * V, config.codevector_dim // G))
        self.weight_proj = nn.Linear(config.conv_dim, G * V)  # reads the CNN features (C = conv_dim)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.temperature = config.latent_temp[0]  # annealed from here towards latent_temp[1]

    def set_temperature(self, tau: float) -> None:
        """Gumbel-softmax temperature; annealed by the trainer (train/schedules.py)."""
        self.temperature = float(tau)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, G, V) fp32 logits."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = F.linear(x.float(), self.weight_proj.weight.float(), self.weight_proj.bias.float())
        return logits.view(-1, self.num_groups, self.num_vars)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, G) argmax entries, no noise (what a trained model assigns to a frame)."""
        return self.logits(x).argmax(dim=-1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """(N, C) features -> quantized (N, codevector_dim); Gumbel noise only in training."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.logits(x)  # (N, G, V)
            best = logits.argmax(dim=-1)  # what the model itself assigns, without noise
            if self.training:
                y_soft = ((logits + gumbel_noise(logits.shape, logits, generator)) / self.temperature).softmax(-1)
                codes = y_soft.argmax(dim=-1)
                y_hard = F.one_hot(codes, self.num_vars).to(y_soft.dtype)
                onehot = y_hard - y_soft.detach() + y_soft  # straight-through: hard forward, soft gradient
            else:
                codes = best
                onehot = F.one_hot(codes, self.num_vars).to(logits.dtype)
            with torch.no_grad():  # from the noise-free choices, as fairseq logs it: the noise would inflate it
                code_ppl = perplexity(F.one_hot(best, self.num_vars).float())
            prob_ppl = perplexity(logits.softmax(dim=-1))
            book = self.codevectors.float().view(self.num_groups, self.num_vars, -1)  # (G, V, d)
            quantized = torch.einsum("ngv,gvd->ngd", onehot, book).flatten(1)  # (N, G*d)
        return QuantizerOutput(quantized, codes, prob_ppl, code_ppl)


def codeword_ids(codes: torch.Tensor, num_vars: int) -> torch.Tensor:
    """(..., G) entries -> (...) one id per codeword (i_1 * V + i_2 for G = 2)."""
    ids = torch.zeros_like(codes[..., 0])
    for g in range(codes.shape[-1]):
        ids = ids * num_vars + codes[..., g]
    return ids
