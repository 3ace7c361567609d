"""The positional convolution, run channels-last, against the plain weight-normed Conv1d on (B, D, T)."""

import pytest
import torch
import torch.nn.functional as F
from model_fixtures import micro_config

from xlsr.model.transformer import PositionalConv


def _reference(pos: PositionalConv, x: torch.Tensor) -> torch.Tensor:
    """fairseq's layout: Conv1d over (B, D, T) with padding k // 2, the extra frame of an even kernel cut, GELU."""
    y = pos.conv(x.transpose(1, 2))  # the module's own Conv1d forward (weight norm applied)
    if pos.trim:
        y = y[:, :, : -pos.trim]
    return F.gelu(y).transpose(1, 2)


@pytest.mark.parametrize("kernel", [16, 15])  # even (one frame trimmed) and odd
def test_positional_conv_matches_conv1d_values_and_gradients(kernel):
    torch.manual_seed(0)
    pos = PositionalConv(micro_config(conv_pos=kernel, conv_pos_groups=4))
    with torch.no_grad():
        pos.conv.bias.normal_()
    x = torch.randn(3, 37, 32, requires_grad=True)
    params = [x] + list(pos.parameters())  # bias, weight-norm g and v
    y = pos(x)
    assert y.shape == (3, 37, 32)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, params, g)
    ref = _reference(pos, x)
    ref_grads = torch.autograd.grad(ref, params, g)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, ref_grads):  # sums of ~10^3 products: rounding relative to the largest entry
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_positional_conv_accepts_a_non_contiguous_input():
    torch.manual_seed(0)
    pos = PositionalConv(micro_config())
    x = torch.randn(37, 3, 32).transpose(0, 1)  # (B, T, D) view with batch stride 32
    with torch.no_grad():
        torch.testing.assert_close(pos(x), _reference(pos, x.contiguous()), rtol=1e-5, atol=1e-6)
