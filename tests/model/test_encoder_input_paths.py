"""What reaches the Transformer and the quantizer: masks, dropouts and SpecAugment, as fairseq orders them.

The encoder's input is caught with a forward pre-hook on `Wav2Vec2Model.encoder`, the quantizer's on
`Wav2Vec2ForPreTraining.quantizer`: a dropout or a mask in the wrong place leaves every shape intact.
"""

import pytest
import torch
from model_fixtures import micro_config, sine_batch

from xlsr.errors import XlsrError
from xlsr.model import Wav2Vec2ForPreTraining, Wav2Vec2Model
from xlsr.model.feature_health import effective_dimension
from xlsr.model.transformer import TransformerLayer


def capture_input(module: torch.nn.Module) -> list[torch.Tensor]:
    """The first positional input of every call of `module` from now on."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


def test_masked_frames_enter_the_transformer_as_the_mask_embedding_undropped():
    # fairseq: dropout_input on the projected features, then the mask: a masked frame is the embedding itself
    torch.manual_seed(0)
    model = Wav2Vec2Model(micro_config(dropout_input=0.5)).train()
    seen = capture_input(model.encoder)
    x = sine_batch(2, 6400)
    T = int(model.frame_lengths(torch.tensor([6400]))[0])
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[0, 3:8] = mask[1, 10:12] = True
    model(x, mask_time_indices=mask)
    h = seen[0]
    torch.testing.assert_close(h[mask], model.mask_embedding.detach().expand(int(mask.sum()), -1), rtol=0, atol=0)
    assert (h[~mask] == 0).float().mean() > 0.3  # the unmasked frames did go through dropout 0.5


def test_spec_augment_channel_spans_have_mask_channel_length():
    # 0.25 x 32 channels / spans of 8: one or two spans of 8 channels per row, so at least 8 channels at zero
    torch.manual_seed(0)
    cfg = micro_config(mask_prob=0.0, mask_length=3, mask_channel_prob=0.25, mask_channel_length=8)
    model = Wav2Vec2Model(cfg).train()
    seen = capture_input(model.encoder)
    for seed in range(4):
        model(sine_batch(3, 6400, seed=seed), spec_augment=True, generator=torch.Generator().manual_seed(seed))
    for h in seen:
        zero_channels = (h == 0).all(dim=1)  # (B, D): a channel masked over every frame
        for row in zero_channels:
            masked = torch.nonzero(row).flatten().tolist()
            assert 8 <= len(masked) <= 16, masked
            runs = [a for a, b in zip(masked, masked[1:] + [None]) if b != a + 1]  # ends of contiguous runs
            assert len(runs) <= 2


def test_explicit_channel_mask_applies_in_eval_mode_too():
    torch.manual_seed(0)
    model = Wav2Vec2Model(micro_config()).eval()
    seen = capture_input(model.encoder)
    channels = torch.zeros(2, 32, dtype=torch.bool)
    channels[0, 4:9] = channels[1, 20:22] = True
    with torch.no_grad():
        model(sine_batch(2, 6400), mask_channel_indices=channels)
    h = seen[0]
    assert (h.transpose(1, 2)[channels] == 0).all()
    assert (h.transpose(1, 2)[~channels] != 0).any(dim=-1).all()


@pytest.mark.parametrize("layer_norm_first", [True, False])
def test_block_dropout_covers_both_sublayers(layer_norm_first):
    # dropout 1 in training drops each sublayer's whole output: only the residual path (and post-LN's norms) is left
    torch.manual_seed(0)
    cfg = micro_config(dropout=1.0, attention_dropout=0.0, activation_dropout=0.0, layer_norm_first=layer_norm_first)
    layer = TransformerLayer(cfg).train()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        y = layer(x, None)
        expected = x if layer_norm_first else layer.final_norm(layer.attention_norm(x))
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)


def test_dropout_features_reaches_the_quantizer_input_in_training_only():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(micro_config(dropout_features=1.0))
    seen = capture_input(model.quantizer)
    x = sine_batch(2, 6400)
    model.train()(x, generator=torch.Generator().manual_seed(0))
    assert (seen[-1] == 0).all()  # every feature dropped
    with torch.no_grad():
        model.eval()(x, generator=torch.Generator().manual_seed(0))
    assert (seen[-1] != 0).any(dim=-1).all()


def test_an_utterance_of_exactly_the_receptive_field_is_accepted():
    torch.manual_seed(0)
    model = Wav2Vec2Model(micro_config()).eval()
    x = sine_batch(2, 1200)
    with torch.no_grad():
        out = model(x, torch.tensor([1200, 400]))
        alone = model(x[1:, :400])
    assert out.frame_lengths.tolist() == [int(model.frame_lengths(torch.tensor([1200]))[0]), 1]
    torch.testing.assert_close(out.last_hidden_state[1, :1], alone.last_hidden_state[0], atol=1e-5, rtol=0)
    with pytest.raises(XlsrError, match="399 samples is shorter"):
        model(x, torch.tensor([1200, 399]))


def test_effective_dimension_of_one_valid_frame_is_refused():
    x = torch.randn(1, 3, 4)
    with pytest.raises(XlsrError, match="at least 2 valid frames.*got 1"):
        effective_dimension(x, torch.tensor([[True, False, False]]))
