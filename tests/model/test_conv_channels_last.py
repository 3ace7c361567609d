"""The layer-norm CNN's channels-last convolution equals F.conv1d, in value and in gradient, in every implementation."""

import pytest
import torch
import torch.nn.functional as F
from model_fixtures import micro_config

import xlsr.model.feature_encoder as feature_encoder
from xlsr.model import Wav2Vec2ForPreTraining
from xlsr.model.channels_last_conv import CONV_IMPL, IMPLEMENTATIONS, conv1d_channels_last


def reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int) -> torch.Tensor:
    """F.conv1d on the (B, C, S) layout, back to (B, T, C)."""
    return F.conv1d(x.transpose(1, 2), w, b, stride=stride).transpose(1, 2)


def value_and_grads(conv, x, w, b, stride, upstream_seed=1):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = b.clone().requires_grad_() if b is not None else None
    y = conv(x, w, b, stride)
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(upstream_seed), dtype=y.dtype)
    (y * upstream).sum().backward()
    return y, x.grad, w.grad, (b.grad if b is not None else None)


# (C_in, kernel, stride, S): the standard layers, a kernel that is not a multiple of the stride, a stride longer
# than the kernel (samples skipped), and inputs whose last samples no window reads (zero gradient there).
SHAPES = [(1, 10, 5, 403), (12, 3, 2, 41), (12, 2, 2, 40), (5, 4, 3, 38), (6, 2, 3, 29)]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("c_in", "kernel", "stride", "S"), SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_conv1d_in_value_and_gradient_fp32(impl, c_in, kernel, stride, S, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, S, c_in, generator=g)
    w = torch.randn(7, c_in, kernel, generator=g)
    b = torch.randn(7, generator=g) if bias else None
    ours = value_and_grads(lambda *a: conv1d_channels_last(*a, impl=impl), x, w, b, stride)
    ref = value_and_grads(reference, x, w, b, stride)
    assert ours[0].is_contiguous() and ours[0].shape == ref[0].shape
    for name, o, r in zip(("value", "grad x", "grad w", "grad b"), ours, ref):
        if r is None:
            assert o is None
            continue
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5 * r.abs().max().item(), msg=name)
    if (S - kernel) % stride:  # samples past the last window get no gradient
        last = (S - kernel) // stride * stride + kernel
        assert (ours[1][:, last:] == 0).all()


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_matches_conv1d_in_float64(impl):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 41, 12, generator=g, dtype=torch.float64)
    w = torch.randn(7, 12, 3, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64)
    ours = value_and_grads(lambda *a: conv1d_channels_last(*a, impl=impl), x, w, b, 2)
    for o, r in zip(ours, value_and_grads(reference, x, w, b, 2)):
        torch.testing.assert_close(o, r)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_view_with_an_offset_is_read_from_its_own_start(impl):
    base = torch.randn(2, 50, 4)
    w = torch.randn(6, 4, 3)
    x = base[:, 5:45]  # a non-contiguous slice
    torch.testing.assert_close(conv1d_channels_last(x, w, None, 2, impl=impl), reference(x, w, None, 2))
    y = base[1:]  # a row offset: storage_offset > 0 and contiguous
    torch.testing.assert_close(conv1d_channels_last(y, w, None, 2, impl=impl), reference(y, w, None, 2))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_autocast_runs_the_convolution_in_bf16_like_conv1d(impl):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 41, 16, generator=g)
    w = torch.randn(8, 16, 3, generator=g).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv1d_channels_last(x, w, None, 2, impl=impl)
        ref = reference(x, w, None, 2)
    assert y.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref.float(), rtol=2e-2, atol=2e-2 * ref.abs().max().item())
    y.float().sum().backward()
    assert w.grad.dtype == torch.float32 and torch.isfinite(w.grad).all()


def test_every_device_type_in_the_table_names_a_known_implementation():
    assert set(CONV_IMPL.values()) <= set(IMPLEMENTATIONS)
    assert all(isinstance(device, str) and isinstance(dtype, torch.dtype) for device, dtype in CONV_IMPL)
    with pytest.raises(ValueError, match="unknown convolution implementation"):
        conv1d_channels_last(torch.randn(1, 10, 2), torch.randn(3, 2, 2), None, 2, impl="scatter")


def pretraining_grads(config, checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and gradients (waveforms included) of one pretraining step on a padded batch; dropout seeded."""
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(config).train()
    model.set_activation_checkpointing(checkpointing)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6000, generator=g)
    lengths = torch.tensor([6000, 4700, 3300])
    x[1, 4700:] = x[2, 3300:] = 0.0
    x.requires_grad_()
    torch.manual_seed(3)
    out = model(x, lengths, generator=torch.Generator().manual_seed(5))
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), {**grads, "waveforms": x.grad}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("grad_mult", [1.0, 0.1])
def test_pretraining_gradients_equal_those_through_conv1d(monkeypatch, impl, checkpointing, grad_mult):
    """The whole step (layer-norm CNN, padded batch, dropout on) with each implementation vs F.conv1d layers."""
    config = micro_config(dropout=0.1, activation_dropout=0.1, dropout_input=0.1, dropout_features=0.1,
                          feature_grad_mult=grad_mult)
    monkeypatch.setattr(feature_encoder, "conv1d_channels_last", reference)
    ref_loss, ref = pretraining_grads(config, checkpointing=False)
    monkeypatch.setattr(feature_encoder, "conv1d_channels_last",
                        lambda x, w, b, s: conv1d_channels_last(x, w, b, s, impl=impl))
    loss, ours = pretraining_grads(config, checkpointing)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    assert ours.keys() == ref.keys() and any(n.startswith("wav2vec2.feature_encoder.") for n in ours)
    for name, r in ref.items():
        # The 1e-8 floor is for k_proj's bias: its gradient is 0 in exact arithmetic (softmax ignores a shift).
        atol = max(1e-5 * r.abs().max().item(), 1e-8)
        torch.testing.assert_close(ours[name], r, rtol=1e-5, atol=atol, msg=name)


def graph_names(t: torch.Tensor) -> set[str]:
    """The names of every backward node that produced `t`."""
    names, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node.name() not in names:
            names.add(node.name())
            todo += [next_node for next_node, _ in node.next_functions]
    return names


def test_the_implementation_follows_the_compute_dtype():
    """fp32 on the CPU takes CONV_IMPL's choice (the matmul weight gradient); bf16 autocast takes "conv"."""
    assert CONV_IMPL[("cpu", torch.float32)] == "conv_mm_weight" and ("cpu", torch.bfloat16) not in CONV_IMPL
    x, w = torch.randn(2, 20, 4, requires_grad=True), torch.randn(3, 4, 3, requires_grad=True)
    fp32 = conv1d_channels_last(x, w, None, 2)
    assert any("ConvMatmulWeightGrad" in name for name in graph_names(fp32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = conv1d_channels_last(x, w, None, 2)
    names = graph_names(bf16)
    assert "ConvolutionBackward0" in names and not any("ConvMatmulWeightGrad" in name for name in names)
    torch.testing.assert_close(bf16.float(), fp32, rtol=2e-2, atol=5e-2)
