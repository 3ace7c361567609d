"""wav2vec 2.0 Base's group-norm CNN at the tiny preset's size: a padded batch of utterances of different
lengths gives each one, at its valid frames, what it gets alone (hidden states, CTC logits, codes)."""

import pytest
import torch
from model_fixtures import assert_padded_batch_equals_single_runs, sine_batch

from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTHS = [16000, 11350, 6730]  # 1 s, and two shorter rows that are padded


def _base_layout_tiny() -> Wav2Vec2Config:
    """The tiny preset's sizes with Base's CNN: GroupNorm on layer 0 only, no conv bias, post-LN."""
    fields = Wav2Vec2Config.preset("tiny").to_dict()
    fields.update(extractor_mode="group_norm", conv_bias=False, layer_norm_first=False, normalize_waveform=False)
    return Wav2Vec2Config.from_dict(fields)


def _random_group_norm_affine(wav2vec2) -> None:
    """Not the identity affine map, so that weight and bias mistakes show."""
    norm = wav2vec2.feature_encoder.conv_layers[0].norm
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)


def _padded() -> torch.Tensor:
    x = sine_batch(len(LENGTHS), max(LENGTHS), seed=3)
    for i, n in enumerate(LENGTHS):
        x[i, n:] = 0.0
    return x


def test_tiny_group_norm_padded_batch_equals_single_runs():
    torch.manual_seed(0)
    ctc = Wav2Vec2ForCTC(_base_layout_tiny(), vocab_size=8).eval()
    pre = Wav2Vec2ForPreTraining(_base_layout_tiny()).eval()
    for model in (ctc.wav2vec2, pre.wav2vec2):
        _random_group_norm_affine(model)
    x, lengths = _padded(), torch.tensor(LENGTHS)
    assert_padded_batch_equals_single_runs(ctc.wav2vec2, x, LENGTHS)
    with torch.no_grad():
        batched = ctc(x, lengths)
        codes, frames = pre.quantize(x, lengths)  # (B, T, G), (B,)
        for i, n in enumerate(LENGTHS):
            alone = ctc(x[i : i + 1, :n])
            T = alone.logits.shape[1]
            assert int(batched.frame_lengths[i]) == T and int(frames[i]) == T
            torch.testing.assert_close(batched.logits[i, :T], alone.logits[0], atol=1e-5, rtol=0)
            alone_codes, _ = pre.quantize(x[i : i + 1, :n])
            assert torch.equal(codes[i, :T], alone_codes[0])
        # The padding matters: normalizing over the whole padded row, as fairseq does, moves the short rows.
        plain = ctc.wav2vec2.feature_encoder(x)
        assert (plain[2, : int(batched.frame_lengths[2])] - ctc.wav2vec2.feature_encoder(x[2:, : LENGTHS[2]])[0]
                ).abs().max() > 1e-3
