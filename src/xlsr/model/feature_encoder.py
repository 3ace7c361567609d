"""CNN feature encoder f: raw waveform (B, S) -> latent frames (B, T, C), 20 ms hop in the standard layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _GradMultiply(torch.autograd.Function):
    """Identity forward; gradient scaled by `scale` (fairseq's feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def grad_multiply(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Scale the gradient flowing back through `x` by `scale` without changing its value."""
    return x if scale == 1.0 else _GradMultiply.apply(x, scale)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T) tensor in fp32 (fairseq's Fp32LayerNorm); returns (B, T, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.transpose(1, 2).float(), self.normalized_shape, self.weight, self.bias,
                            self.eps).to(x.dtype)


class Fp32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in fp32; with one group per channel it normalizes each channel over time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


class ConvLayer(nn.Module):
    """Conv1d -> optional norm -> GELU (the Dropout(0.0) of fairseq is a no-op and omitted)."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, bias: bool, norm: nn.Module | None):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, S') -> (B, C_out, T')."""
        x = self.conv(x)
        if isinstance(self.norm, ChannelLayerNorm):
            # GELU while the tensor is (B, T, C) and contiguous, then a transposed view for the next conv.
            return F.gelu(self.norm(x)).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Stack of strided convolutions in fairseq's "default" (group_norm) or "layer_norm" mode."""

    def __init__(self, conv_layers: list[tuple[int, int, int]], mode: str, conv_bias: bool,
                 grad_mult: float = 1.0, eps: float = 1e-5):
        super().__init__()
        layers, in_dim = [], 1
        for i, (dim, kernel, stride) in enumerate(conv_layers):
            if mode == "layer_norm":
                norm = ChannelLayerNorm(dim, eps=eps)
            elif i == 0:  # group_norm mode normalizes the first layer only, one group per channel
                norm = Fp32GroupNorm(dim, dim, eps=eps)
            else:
                norm = None
            layers.append(ConvLayer(in_dim, dim, kernel, stride, conv_bias, norm))
            in_dim = dim
        self.conv_layers = nn.ModuleList(layers)
        self.kernels_strides = [(k, s) for _, k, s in conv_layers]
        self.grad_mult = grad_mult

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames for each input length: T = floor((S - k) / s) + 1 per layer, no padding."""
        t = sample_lengths
        for k, s in self.kernels_strides:
            t = torch.div(t - k, s, rounding_mode="floor") + 1
        return t.clamp(min=0)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, T, C)."""
        if self.grad_mult == 0.0:
            # A frozen CNN needs no graph at all: saves the activations' memory.
            with torch.no_grad():
                return self._run(waveforms)
        return grad_multiply(self._run(waveforms), self.grad_mult)

    def _run(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = waveforms.unsqueeze(1)  # (B, 1, S)
        for layer in self.conv_layers:
            x = layer(x)
        return x.transpose(1, 2)  # (B, T, C); contiguous in layer_norm mode
