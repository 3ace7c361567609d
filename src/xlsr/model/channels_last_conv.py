"""Strided Conv1d on channels-last activations (B, S, C_in) -> (B, T, C_out): the layer-norm CNN's convolution.

The layer-norm CNN normalizes over channels, so it wants (B, T, C) between its convolutions. The memory of a
contiguous (B, S, C) tensor is exactly a (B, C, 1, S) image in torch's channels_last format, so a 2-D
convolution with a (C_out, C_in, 1, k) kernel reads and writes it in place: no layout copy, and both directions
are the library's convolutions (oneDNN on the CPU, cuDNN on CUDA). The backward of the input is a transposed
convolution, not the scatter that an as_strided window view turns into.

Implementations, picked per device type and compute dtype by measurement (benchmarks/cnn_conv.py,
scripts/gpu_checks/run.sh):
- "conv": the 2-D convolution forward, and autograd's convolution backward for the input and the weight.
- "conv_mm_weight": the same forward and input gradient; the weight gradient as matmuls, one per kernel tap,
  of strided views of the input with the output gradient. In fp32 on the CPU (oneDNN 3.12; a 2-core AMD EPYC
  and a 2-core Xeon with AMX alike) the 256- and 512-channel k=3 layers' oneDNN weight gradient took 2-3x the
  time of the matmuls; the forward and the input gradient of the convolution took about half the time of a
  matmul over im2col windows. In bf16 on the Xeon (AMX) oneDNN's own weight gradient is the faster one: the
  whole 512-channel CNN 677 ms with "conv" against 1193 ms (docs/speed.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMPLEMENTATIONS = ("conv", "conv_mm_weight")
# (device type, compute dtype) -> implementation; any other pair: "conv"
CONV_IMPL: dict[tuple[str, torch.dtype], str] = {("cpu", torch.float32): "conv_mm_weight"}


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of `x` computes in: the autocast dtype where autocast is on for its device."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def strided_windows(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Contiguous (B, S, C) -> (B, T, kernel * C): the T = floor((S - kernel) / stride) + 1 windows a strided
    conv reads, each `kernel` consecutive steps flattened (step-major). A view: the windows overlap in memory."""
    B, S, C = x.shape
    T = (S - kernel) // stride + 1
    return x.as_strided((B, T, kernel * C), (S * C, stride * C, 1), x.storage_offset())


def _as_image(x: torch.Tensor) -> torch.Tensor:
    """Contiguous (B, S, C) -> the same memory as a channels_last (B, C, 1, S) image."""
    return x.transpose(1, 2).unsqueeze(2)


def _from_image(y: torch.Tensor) -> torch.Tensor:
    """Channels_last (B, C, 1, T) -> (B, T, C), contiguous (a view when the convolution kept the format)."""
    return y.squeeze(2).transpose(1, 2).contiguous()


class _ConvMatmulWeightGrad(torch.autograd.Function):
    """Channels-last strided conv: convolution forward and input gradient, weight gradient as matmuls (below)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)  # the input, not its im2col windows: they are rebuilt in backward
        ctx.stride, ctx.has_bias = stride, bias is not None
        return _from_image(F.conv2d(_as_image(x), weight.unsqueeze(2), bias, stride=(1, stride)))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        c_out, c_in, kernel = weight.shape
        grad = grad.contiguous()  # (B, T, C_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # a transposed convolution, written channels-last like its input
            grad_x = _from_image(torch.ops.aten.convolution_backward(
                _as_image(grad), _as_image(x), weight.unsqueeze(2), None, (1, ctx.stride), (0, 0), (1, 1), False,
                (0, 0), 1, (True, False, False))[0])
        if ctx.needs_input_grad[1]:
            grad_w = _weight_gradient(x, grad, kernel, ctx.stride)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 1))
        return grad_x, grad_w, grad_b, None


def _weight_gradient(x: torch.Tensor, grad: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """(C_out, C_in, k): the sum over (b, t) of the input window at t times the output gradient at t."""
    B, T, c_out = grad.shape
    if x.shape[-1] == 1:  # one input channel: the im2col windows are small, one matmul (k, B * T) @ (B * T, C_out)
        windows = strided_windows(x, kernel, stride).reshape(-1, kernel)
        return (windows.t() @ grad.view(-1, c_out)).t().unsqueeze(1)
    # Wide inputs: per kernel tap j, the steps j, j + s, ... are a strided view of x, a valid matmul operand, so no
    # im2col copy is written (measured 20% faster than the im2col matmul on the 256-channel k=3 layers).
    taps = [torch.bmm(x[:, j: j + (T - 1) * stride + 1: stride].transpose(1, 2), grad).sum(0) for j in range(kernel)]
    return torch.stack(taps, dim=-1).transpose(0, 1)  # (C_in, C_out, k) -> (C_out, C_in, k)


def conv1d_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                         impl: str | None = None) -> torch.Tensor:
    """F.conv1d (no padding) on channels-last input (B, S, C_in) -> (B, T, C_out), contiguous.

    `impl` (one of IMPLEMENTATIONS) defaults to CONV_IMPL's choice for the input's device type and compute
    dtype. Under autocast the convolution runs in the autocast dtype, as F.conv1d would.
    """
    device, dtype = x.device.type, compute_dtype(x)
    impl = impl or CONV_IMPL.get((device, dtype), "conv")
    x = x.contiguous()
    if impl == "conv":
        return _from_image(F.conv2d(_as_image(x), weight.unsqueeze(2), bias, stride=(1, stride)))
    if impl != "conv_mm_weight":
        raise ValueError(f"impl: unknown convolution implementation {impl!r}; allowed: {IMPLEMENTATIONS}")
    if torch.is_autocast_enabled(device):  # a custom Function's ops see no autocast: cast as it would
        x, weight = x.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    with torch.autocast(device, enabled=False):
        return _ConvMatmulWeightGrad.apply(x, weight, bias, stride)
