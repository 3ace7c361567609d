"""CNN feature encoder f: raw waveform (B, S) -> latent frames (B, T, C), 20 ms hop in the standard layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xlsr.model.channels_last_conv import compute_dtype, conv1d_channels_last
from xlsr.model.config import Wav2Vec2Config
from xlsr.model.recompute import run_layer

# Where the group-norm CNN (wav2vec 2.0 Base's) runs channels-last, (B, T, C) between its convolutions as the
# layer-norm CNN always does, instead of nn.Conv1d on (B, C, T): (device type, compute dtype) pairs, by measurement
# (docs/speed.md). On a CPU with AMX, oneDNN's bf16 convolutions work channels-last and copy a (B, C, T) input and
# output to and from that layout (~40% of a `base` bf16 inference); in fp32 the (B, C, T) convolution is faster.
GROUP_NORM_CHANNELS_LAST: set[tuple[str, torch.dtype]] = {("cpu", torch.bfloat16)}


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


CNN_NORM_EPS = 1e-5


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a channels-last (B, T, C) tensor in fp32 (fairseq's Fp32LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Steps of an unpadded strided conv that lie fully inside each input: floor((L - k) / s) + 1, at least 0."""
    return (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


def group_norm_over_valid_steps(x: torch.Tensor, steps: torch.Tensor | None, weight: torch.Tensor,
                                bias: torch.Tensor, eps: float, channels_last: bool = False) -> torch.Tensor:
    """One-group-per-channel GroupNorm of x (B, C, T), or (B, T, C) when `channels_last`, in fp32: each channel
    normalized over time, each row's statistics over its first `steps` only (all steps when `steps` is None).

    A row then gets exactly what it gets alone, unpadded. Steps past a row's `steps` are padding and come out
    as zeros (finite; valid frames further up never read them).
    """
    xf = x.float()
    time_dim = 1 if channels_last else 2
    # weight and bias broadcast over the channel dimension
    weight, bias = (weight, bias) if channels_last else (weight[:, None], bias[:, None])
    if steps is None:
        mean = xf.mean(time_dim, keepdim=True)
        centered = xf - mean
        var = centered.square().mean(time_dim, keepdim=True)  # biased, as GroupNorm
        return (centered * torch.rsqrt(var + eps) * weight + bias).to(x.dtype)
    pad = torch.arange(x.shape[time_dim], device=x.device)[None, :] >= steps[:, None]  # (B, T)
    pad = pad.unsqueeze(2 if channels_last else 1)  # (B, T, 1) or (B, 1, T)
    n = steps.clamp(min=1).to(xf.dtype)[:, None, None]
    mean = xf.masked_fill(pad, 0.0).sum(time_dim, keepdim=True) / n
    centered = (xf - mean).masked_fill(pad, 0.0)
    var = centered.square().sum(time_dim, keepdim=True) / n
    y = centered * torch.rsqrt(var + eps) * weight + bias
    return y.masked_fill(pad, 0.0).to(x.dtype)


class Fp32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in fp32; with one group per channel it normalizes each channel over time."""

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None, channels_last: bool = False) -> torch.Tensor:
        """(B, C, T) -> (B, C, T); with `steps` (B,), rows shorter than T are normalized over their valid steps.

        fairseq and transformers normalize over the padding too, so there an utterance's features depend on
        its batch. Rows without padding keep the plain GroupNorm result bit for bit; choosing per row with
        `torch.where` needs no host sync when `steps` lives on an accelerator. With `channels_last` the input
        and output are (B, T, C) and one group per channel is required.
        """
        if channels_last:
            assert self.num_groups == self.num_channels, "channels-last GroupNorm needs one group per channel"
            return group_norm_over_valid_steps(x, steps, self.weight, self.bias, self.eps, channels_last=True)
        full = F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)
        if steps is None:
            return full
        assert self.num_groups == self.num_channels, "valid-step statistics need one group per channel"
        masked = group_norm_over_valid_steps(x, steps, self.weight, self.bias, self.eps)
        return torch.where((steps < x.shape[-1])[:, None, None], masked, full)


class ConvLayer(nn.Module):
    """Conv1d -> optional norm -> GELU (the Dropout(0.0) of fairseq is a no-op and omitted)."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, bias: bool, norm: nn.Module | None):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm = norm

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None, channels_last: bool = False) -> torch.Tensor:
        """(B, C_in, S') -> (B, C_out, T'), or channels-last (B, S', C_in) -> (B, T', C_out) with a LayerNorm
        or when `channels_last`; `steps` (B,): valid output steps per row, for a GroupNorm only."""
        if isinstance(self.norm, ChannelLayerNorm):
            return _gelu(self.norm(conv1d_channels_last(x, self.conv.weight, self.conv.bias, self.conv.stride[0])))
        x = conv1d_channels_last(x, self.conv.weight, self.conv.bias, self.conv.stride[0]) if channels_last else self.conv(x)
        if self.norm is not None:  # Fp32GroupNorm
            x = self.norm(x, steps, channels_last)
        return _gelu(x)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU of a fresh activation; in place when no graph is recorded (no new buffer of the layer's size)."""
    return F.gelu(x) if torch.is_grad_enabled() else torch.ops.aten.gelu_(x)


class FeatureEncoder(nn.Module):
    """Stack of strided convolutions in fairseq's "default" (group_norm) or "layer_norm" mode."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        # torch's default eps, whatever the model's layer_norm_eps: fairseq's and transformers' CNN norms take no eps
        # (layer_norm_eps reaches the Transformer and the feature LayerNorm only)
        mode, eps = config.extractor_mode, CNN_NORM_EPS
        layers, in_dim = [], 1
        for i, (dim, kernel, stride) in enumerate(config.conv_layers):
            if mode == "layer_norm":
                norm = ChannelLayerNorm(dim, eps=eps)
            elif i == 0:  # group_norm mode normalizes the first layer only, one group per channel
                norm = Fp32GroupNorm(dim, dim, eps=eps)
            else:
                norm = None
            layers.append(ConvLayer(in_dim, dim, kernel, stride, config.conv_bias, norm))
            in_dim = dim
        self.conv_layers = nn.ModuleList(layers)
        self.kernels_strides = [(k, s) for _, k, s in config.conv_layers]
        self.mode = mode
        self.grad_mult = config.feature_grad_mult
        self.activation_checkpointing = False  # recompute each conv layer in backward (model/recompute.py)
        self.channels_last: bool | None = None  # group_norm mode's layout; None: by GROUP_NORM_CHANNELS_LAST

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames for each input length: T = floor((S - k) / s) + 1 per layer, no padding."""
        t = sample_lengths
        for k, s in self.kernels_strides:
            t = conv_output_lengths(t, k, s)
        return t

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S), optional lengths (B,) in samples -> (B, T, C); each row's valid frames as if it ran alone."""
        if self.grad_mult == 0.0 or not torch.is_grad_enabled():
            # A frozen CNN (or inference) needs no graph at all: saves the activations' memory.
            with torch.no_grad():
                return self._run_without_graph(waveforms, lengths)
        return grad_multiply(self._run(waveforms, lengths), self.grad_mult)

    def _run_without_graph(self, waveforms: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """`_run` without autograd; on the CPU one row at a time, which gives each row the same result.

        Why by rows: a row's activations (26 MB at 512 channels x 4 s) stay in the cache and in the allocator's
        heap between layers, where a batch's (100+ MB) are fresh pages every layer: the `base` CNN of 4 x 4 s
        took 1.13 s by rows vs 1.47 s batched (one thread, CPU time; docs/speed.md). A GPU keeps the batch.
        """
        if waveforms.device.type != "cpu" or waveforms.dim() != 2 or waveforms.shape[0] < 2:
            return self._run(waveforms, lengths)
        rows = range(waveforms.shape[0])
        return torch.cat([self._run(waveforms[i: i + 1], None if lengths is None else lengths[i: i + 1])
                          for i in rows])

    def _layer0_steps(self, waveforms: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """Valid steps of layer 0 per row when its GroupNorm must skip padding; None for the plain GroupNorm.
        (group_norm mode only: a LayerNorm is per time step, so padding never reaches a valid frame.)"""
        if lengths is None:
            return None
        k, s = self.kernels_strides[0]
        steps = conv_output_lengths(torch.as_tensor(lengths).long(), k, s)
        T0 = (waveforms.shape[1] - k) // s + 1
        if steps.device.type == "cpu" and not bool((steps < T0).any()):
            return None  # nothing padded (decided on the host, no sync): the plain GroupNorm, bit for bit
        return steps.to(waveforms.device, non_blocking=True)

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "layer_norm":  # channels-last throughout: (B, S, 1) -> (B, T, C), contiguous
            x = waveforms.unsqueeze(-1)
            for layer in self.conv_layers:
                x = run_layer(layer, x, recompute=self.activation_checkpointing)
            return x
        channels_last = self.group_norm_channels_last(waveforms)
        x = waveforms.unsqueeze(-1 if channels_last else 1)  # (B, S, 1) or (B, 1, S)
        steps = self._layer0_steps(waveforms, lengths)
        x = run_layer(self.conv_layers[0], x, steps, channels_last, recompute=self.activation_checkpointing)
        for layer in self.conv_layers[1:]:
            x = run_layer(layer, x, None, channels_last, recompute=self.activation_checkpointing)
        return x if channels_last else x.transpose(1, 2)  # (B, T, C)

    def group_norm_channels_last(self, waveforms: torch.Tensor) -> bool:
        """Whether the group-norm CNN runs channels-last for this input: `self.channels_last` when set, else
        GROUP_NORM_CHANNELS_LAST's choice for the device type and the dtype the convolutions compute in."""
        if self.channels_last is not None:
            return self.channels_last
        return (waveforms.device.type, compute_dtype(waveforms)) in GROUP_NORM_CHANNELS_LAST
