"""Activation checkpointing: same loss and gradients, far less memory held between forward and backward."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining


def small_config(mode: str) -> Wav2Vec2Config:
    """A small model with every dropout on, so the test also covers the replay of dropout draws."""
    return Wav2Vec2Config(
        conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2, extractor_mode=mode,
        conv_bias=mode == "layer_norm", hidden_size=32, num_layers=3, num_heads=4, ffn_dim=64,
        layer_norm_first=mode == "layer_norm", dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
        dropout_input=0.1, dropout_features=0.1, conv_pos=16, conv_pos_groups=4, final_dim=16, codevector_dim=16,
        num_codevector_groups=2, num_codevectors_per_group=8, num_negatives=10, mask_prob=0.5, mask_length=3,
        min_masks=2, feature_grad_mult=0.1)


def waves(batch: int = 3, samples: int = 8000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, samples, generator=g)
    lengths = torch.tensor([samples] + [samples - 1500 * i for i in range(1, batch)])
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 0.0
    return x, lengths


def loss_and_grads(model: torch.nn.Module, checkpointing: bool) -> tuple[torch.Tensor, dict]:
    model.set_activation_checkpointing(checkpointing)
    model.zero_grad()
    torch.manual_seed(3)  # dropout draws
    x, lengths = waves()
    out = model(x, lengths, generator=torch.Generator().manual_seed(5))
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["layer_norm", "group_norm"])
def test_checkpointed_pretraining_step_has_the_same_loss_and_gradients(mode):
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(small_config(mode)).train()
    loss, grads = loss_and_grads(model, checkpointing=False)
    loss_ckpt, grads_ckpt = loss_and_grads(model, checkpointing=True)
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-6)
    assert grads_ckpt.keys() == grads.keys()
    assert any(n.startswith("wav2vec2.feature_encoder.") for n in grads)  # the CNN is trained and checkpointed
    for name, g in grads.items():
        torch.testing.assert_close(grads_ckpt[name], g, rtol=1e-5, atol=1e-6, msg=name)


def test_checkpointed_ctc_step_has_the_same_gradients_with_a_frozen_cnn():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(small_config("layer_norm"), vocab_size=6).train()
    model.freeze_feature_encoder()
    labels = torch.tensor([[1, 2, 3], [2, 4, 0], [5, 1, 0]])

    def step(checkpointing: bool):
        model.set_activation_checkpointing(checkpointing)
        model.zero_grad()
        torch.manual_seed(3)
        x, lengths = waves()
        model(x, lengths, labels, generator=torch.Generator().manual_seed(5)).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, ckpt = step(False), step(True)
    assert plain.keys() == ckpt.keys() and plain
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-5, atol=1e-6, msg=name)


def bytes_held_after_forward(model: torch.nn.Module, checkpointing: bool) -> int:
    """Net CPU memory the forward pass allocates and does not free: the activations kept for backward."""
    model.set_activation_checkpointing(checkpointing)
    x, lengths = waves(batch=2, samples=32000)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = model(x, lengths, generator=torch.Generator().manual_seed(5))
    held = sum(e.self_cpu_memory_usage for e in prof.events())
    del out
    return held


def test_checkpointing_holds_much_less_activation_memory():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(small_config("layer_norm")).train()
    plain = bytes_held_after_forward(model, checkpointing=False)
    ckpt = bytes_held_after_forward(model, checkpointing=True)
    assert plain > 0
    assert ckpt < plain / 3, (plain, ckpt)


def test_no_recompute_in_eval_or_without_grad():
    model = Wav2Vec2ForPreTraining(small_config("layer_norm")).eval()
    model.set_activation_checkpointing(True)
    x, lengths = waves()
    with torch.no_grad():
        a = model.wav2vec2(x, lengths).last_hidden_state
    model.set_activation_checkpointing(False)
    with torch.no_grad():
        b = model.wav2vec2(x, lengths).last_hidden_state
    torch.testing.assert_close(a, b, rtol=0, atol=0)
