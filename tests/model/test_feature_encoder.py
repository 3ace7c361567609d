"""The CNN feature encoder: a padded batch gives every utterance its single-utterance features in both modes."""

import torch
import torch.nn.functional as F
from model_fixtures import assert_padded_batch_equals_single_runs, micro_config, sine_batch

from xlsr.model import Wav2Vec2Model
from xlsr.model.feature_encoder import group_norm_over_valid_steps


def _group_norm_model() -> Wav2Vec2Model:
    """wav2vec 2.0 Base's layout at micro size: GroupNorm on CNN layer 0 only, no conv bias, post-LN."""
    torch.manual_seed(0)
    model = Wav2Vec2Model(micro_config(extractor_mode="group_norm", conv_bias=False, layer_norm_first=False)).eval()
    norm = model.feature_encoder.conv_layers[0].norm
    with torch.no_grad():  # not the identity affine map, so that weight and bias mistakes show
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return model


def _padded(lengths: list[int], seed: int = 0) -> torch.Tensor:
    x = sine_batch(len(lengths), max(lengths), seed=seed)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0  # the data loader's zero padding
    return x


def test_group_norm_padded_batch_equals_single_utterance_runs():
    model = _group_norm_model()
    lengths = [8000, 5300, 3100]
    assert_padded_batch_equals_single_runs(model, _padded(lengths), lengths)


def test_group_norm_row_padded_by_one_layer0_step_equals_its_single_run():
    """Padded by 5 samples (layer 0's stride): one padded step of layer 0, still left out of its statistics."""
    model = _group_norm_model()
    lengths = [8000, 7995]
    assert_padded_batch_equals_single_runs(model, _padded(lengths), lengths)


def test_group_norm_without_padding_is_the_plain_group_norm_bit_for_bit():
    model = _group_norm_model()
    fe = model.feature_encoder
    x = sine_batch(2, 6000)
    with torch.no_grad():
        # Layer 0 by hand: conv -> fp32 GroupNorm with one group per channel -> GELU, then the other layers;
        # row by row, as the CNN runs on the CPU without a graph (a batched conv may round differently).
        conv0, norm0 = fe.conv_layers[0].conv, fe.conv_layers[0].norm
        rows = []
        for row in x.split(1):
            h = F.gelu(F.group_norm(conv0(row.unsqueeze(1)), norm0.num_groups, norm0.weight, norm0.bias, norm0.eps))
            for layer in fe.conv_layers[1:]:
                h = layer(h)
            rows.append(h)
        plain = fe(x)
        assert torch.equal(plain, torch.cat(rows).transpose(1, 2))
        assert torch.equal(fe(x, torch.tensor([6000, 6000])), plain)
        assert torch.equal(model(x, torch.tensor([6000, 6000])).last_hidden_state, model(x).last_hidden_state)
        # In a padded batch, the unpadded row keeps the plain result bit for bit too.
        y = _padded([6000, 4100])
        assert torch.equal(fe(y, torch.tensor([6000, 4100]))[0], fe(y)[0])


def test_group_norm_over_valid_steps_matches_group_norm_on_the_valid_part():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 20, generator=g)
    weight, bias = torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g)
    steps = torch.tensor([20, 13, 2])
    y = group_norm_over_valid_steps(x, steps, weight, bias, 1e-5)
    for i, n in enumerate(steps.tolist()):
        ref = F.group_norm(x[i : i + 1, :, :n], 4, weight, bias, 1e-5)[0]
        torch.testing.assert_close(y[i, :, :n], ref, atol=1e-6, rtol=0)
        assert (y[i, :, n:] == 0).all()  # padding comes out as zeros, finite


def test_group_norm_gradients_are_finite_and_reach_the_norm_through_a_padded_batch():
    model = _group_norm_model().train()
    lengths = torch.tensor([4000, 2500])
    out = model(_padded(lengths.tolist()), lengths)
    valid = torch.arange(out.last_hidden_state.shape[1])[None, :] < out.frame_lengths[:, None]
    (out.last_hidden_state * valid[..., None]).square().sum().backward()
    norm = model.feature_encoder.conv_layers[0].norm
    for p in (norm.weight, norm.bias, model.feature_encoder.conv_layers[0].conv.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_layer_norm_mode_ignores_lengths():
    torch.manual_seed(0)
    fe = Wav2Vec2Model(micro_config()).feature_encoder
    lengths = torch.tensor([6000, 4100])
    x = _padded(lengths.tolist())
    with torch.no_grad():
        assert torch.equal(fe(x, lengths), fe(x))


def test_group_norm_over_valid_steps_channels_last_is_the_transposed_result():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 20, generator=g)
    weight, bias = torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g)
    for steps in (None, torch.tensor([20, 13, 2])):
        first = group_norm_over_valid_steps(x, steps, weight, bias, 1e-5)
        last = group_norm_over_valid_steps(x.transpose(1, 2).contiguous(), steps, weight, bias, 1e-5, channels_last=True)
        torch.testing.assert_close(last, first.transpose(1, 2), atol=1e-6, rtol=0)
    plain = group_norm_over_valid_steps(x, None, weight, bias, 1e-5)
    torch.testing.assert_close(plain, F.group_norm(x, 4, weight, bias, 1e-5), atol=1e-6, rtol=0)


def _both_layouts(fe, *args, grad: bool):
    """The group-norm CNN's output (and, with `grad`, every parameter's gradient) in each layout."""
    results = []
    for channels_last in (False, True):
        fe.channels_last = channels_last
        fe.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(grad):
            out = fe(*args)
        grads = []
        if grad:
            out.square().sum().backward()
            grads = [p.grad.clone() for p in fe.parameters()]
        results.append((out.detach(), grads))
    fe.channels_last = None
    return results


def test_group_norm_cnn_channels_last_layout_matches_the_channels_first_one():
    fe = _group_norm_model().feature_encoder
    lengths = torch.tensor([6000, 4100])
    for args in ((sine_batch(2, 6000),), (_padded(lengths.tolist()), lengths)):
        (first, _), (last, _) = _both_layouts(fe, *args, grad=False)  # no graph: rows one at a time
        assert last.shape == first.shape and last.is_contiguous()
        torch.testing.assert_close(last, first, rtol=1e-5, atol=1e-5)
        (first, first_grads), (last, last_grads) = _both_layouts(fe.train(), *args, grad=True)
        torch.testing.assert_close(last, first, rtol=1e-5, atol=1e-5)
        for a, b in zip(first_grads, last_grads, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        fe.eval()


def test_group_norm_cnn_layout_is_chosen_by_device_and_compute_dtype():
    fe = _group_norm_model().feature_encoder
    x = sine_batch(2, 6000)
    assert not fe.group_norm_channels_last(x)  # fp32 on the CPU: nn.Conv1d on (B, C, T), bit for bit as before
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fe.group_norm_channels_last(x)
        with torch.no_grad():
            chosen = fe(x)
            fe.channels_last = True
            forced = fe(x)
        fe.channels_last = None
    assert torch.equal(chosen, forced)
    assert fe.group_norm_channels_last(x.bfloat16())
    fe.channels_last = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fe.group_norm_channels_last(x)
