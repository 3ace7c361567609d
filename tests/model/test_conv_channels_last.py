"""The layer-norm CNN's channels-last convolution equals F.conv1d, in value and in gradient."""

import pytest
import torch
import torch.nn.functional as F

from xlsr.model.feature_encoder import conv1d_channels_last


@pytest.mark.parametrize(("c_in", "kernel", "stride", "bias"), [(1, 10, 5, True), (12, 3, 2, True), (12, 2, 2, False)])
def test_matches_conv1d_in_value_and_gradient(c_in, kernel, stride, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 41, c_in, generator=g, dtype=torch.float64)
    w = torch.randn(7, c_in, kernel, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64) if bias else None
    ours_in, ref_in = [t.clone().requires_grad_() for t in (x, x)]
    ours_w, ref_w = [t.clone().requires_grad_() for t in (w, w)]
    ours = conv1d_channels_last(ours_in, ours_w, b, stride)  # (B, T, C_out)
    ref = F.conv1d(ref_in.transpose(1, 2), ref_w, b, stride=stride).transpose(1, 2)
    torch.testing.assert_close(ours, ref)
    upstream = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad)  # overlapping windows accumulate their gradients
    torch.testing.assert_close(ours_w.grad, ref_w.grad)


def test_a_view_with_an_offset_is_read_from_its_own_start():
    base = torch.randn(2, 50, 4)
    x = base[:, 5:45]  # a non-contiguous slice (strided_windows makes it contiguous first)
    w = torch.randn(6, 4, 3)
    torch.testing.assert_close(conv1d_channels_last(x, w, None, 2), F.conv1d(x.transpose(1, 2), w, stride=2).transpose(1, 2))
    y = base[1:]  # a row offset: storage_offset > 0 and contiguous
    torch.testing.assert_close(conv1d_channels_last(y, w, None, 2), F.conv1d(y.transpose(1, 2), w, stride=2).transpose(1, 2))
