"""benchmarks/pretrain_step.py's FLOP count, behind its "% of the measured matmul peak": against the hand formula."""

import pytest
import torch
from _benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def pretrain_step():
    return load_benchmark("pretrain_step")


@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("input_grad", [True, False])
def test_a_grouped_conv_counts_its_weight_gradient_once(pretrain_step, groups, input_grad):
    B, C, T, k = 2, 32, 50, 8  # the positional conv's form: padding k // 2, so T + 1 outputs
    conv = torch.nn.Conv1d(C, C, k, padding=k // 2, groups=groups)
    x = torch.randn(B, C, T, requires_grad=input_grad)
    forward = 2 * B * (T + 1) * C * (C // groups) * k  # multiply-adds of the forward, times 2
    # backward: the weight gradient costs a forward, and so does the input gradient where one is needed
    assert pretrain_step.count_flops(lambda: conv(x).sum().backward()) == forward * (3 if input_grad else 2)


def test_torch_alone_counts_the_weight_gradient_groups_times(pretrain_step):
    """The reason for the custom formula; if a torch release fixes its count, the two agree and this says so."""
    B, C, T, k, g = 2, 32, 50, 8, 16
    conv = torch.nn.Conv1d(C, C, k, padding=k // 2, groups=g)
    x = torch.randn(B, C, T)
    forward = 2 * B * (T + 1) * C * (C // g) * k
    step = lambda: conv(x).sum().backward()  # noqa: E731
    assert pretrain_step.count_flops(step, torch_conv_backward=True) == forward + g * forward
    assert pretrain_step.count_flops(step) == 2 * forward


def test_a_grouped_transposed_conv_counts_its_weight_gradient_once(pretrain_step):
    B, C, T, k, g = 2, 32, 20, 4, 4
    conv = torch.nn.ConvTranspose1d(C, C, k, stride=2, groups=g)
    x = torch.randn(B, C, T, requires_grad=True)
    forward = 2 * B * T * C * (C // g) * k  # each input frame meets the k taps of its group's C / g channels
    assert pretrain_step.count_flops(lambda: conv(x).sum().backward()) == 3 * forward
