"""Our model loaded from a transformers directory computes what transformers computes (fp32, eval, padded)."""

from __future__ import annotations

import pytest
import torch
from hf_fixtures import HF_CONFIGS, make_hf, padded_batch

from xlsr.interop.load import load_pretrained

TOL = 1e-4


def _load(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path / "hf")
    loaded = load_pretrained(tmp_path / "hf")
    assert loaded.source_format == "hf"
    assert type(loaded.model).__name__ == type(hf_model).__name__
    return loaded.model


def _uses_mask(config_name: str) -> bool:
    # transformers feeds attention masks to layer-norm models only; group norm sees padding anyway.
    return HF_CONFIGS[config_name]["feat_extract_norm"] == "layer"


def _valid(frames: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Zero the padded frames of x (B, T, ...) so that only valid ones are compared."""
    keep = torch.arange(x.shape[1])[None, :] < frames[:, None]
    return x * keep.view(*keep.shape, *([1] * (x.dim() - 2)))


@pytest.mark.parametrize("config_name", list(HF_CONFIGS))
def test_hidden_states_match_transformers(config_name, tmp_path):
    hf = make_hf("Wav2Vec2Model", config_name)
    ours = _load(hf, tmp_path)
    x, lengths, attention_mask = padded_batch()
    masked = _uses_mask(config_name)
    with torch.no_grad():
        ref = hf(x, attention_mask=attention_mask if masked else None, output_hidden_states=True)
        out = ours(x, lengths if masked else None, output_hidden_states=True)
    frames = out.frame_lengths
    if masked:
        assert frames.tolist() == hf._get_feat_extract_output_lengths(lengths).tolist()
    assert out.last_hidden_state.shape == ref.last_hidden_state.shape
    assert ref.last_hidden_state.abs().mean() > 0.1  # a real signal, not a collapsed output
    torch.testing.assert_close(_valid(frames, out.last_hidden_state), _valid(frames, ref.last_hidden_state),
                               atol=TOL, rtol=0)
    torch.testing.assert_close(_valid(frames, out.extract_features), _valid(frames, ref.extract_features),
                               atol=TOL, rtol=0)
    # The input of every block agrees too. (transformers 5 records the last block's output before the
    # final pre-LN norm; ours ends with the model output, so the last entries are compared apart.)
    assert len(out.hidden_states) == len(ref.hidden_states)
    for ours_h, ref_h in zip(out.hidden_states[:-1], ref.hidden_states[:-1]):
        torch.testing.assert_close(_valid(frames, ours_h), _valid(frames, ref_h), atol=TOL, rtol=0)
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)


@pytest.mark.parametrize("config_name", list(HF_CONFIGS))
def test_ctc_logits_match_transformers(config_name, tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", config_name, seed=1)
    ours = _load(hf, tmp_path)
    x, lengths, attention_mask = padded_batch(seed=1)
    masked = _uses_mask(config_name)
    with torch.no_grad():
        ref = hf(x, attention_mask=attention_mask if masked else None).logits
        out = ours(x, lengths if masked else None)
    assert out.logits.dtype == torch.float32
    torch.testing.assert_close(_valid(out.frame_lengths, out.logits), _valid(out.frame_lengths, ref),
                               atol=TOL, rtol=0)


@pytest.mark.parametrize("config_name", list(HF_CONFIGS))
def test_quantizer_codevectors_match_transformers(config_name, tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", config_name, seed=2)
    ours = _load(hf, tmp_path)
    x, lengths, attention_mask = padded_batch(seed=2)
    masked = _uses_mask(config_name)
    G = HF_CONFIGS[config_name]["num_codevector_groups"]
    with torch.no_grad():
        base = hf.wav2vec2(x, attention_mask=attention_mask if masked else None)
        ref_q, _ = hf.quantizer(base.extract_features)  # eval mode: argmax, no noise
        ref_targets = hf.project_q(ref_q)
        ref_pred = hf.project_hid(base.last_hidden_state)

        codes, frames = ours.quantize(x, lengths if masked else None)  # (B, T, G)
        B, T, _ = codes.shape
        book = ours.quantizer.codevectors.view(G, -1, ours.quantizer.codevectors.shape[-1])  # (G, V, d)
        picked = torch.cat([book[g][codes[..., g]] for g in range(G)], dim=-1)  # (B, T, G*d)
        feats = ours.wav2vec2(x, lengths if masked else None)
        via_forward = ours.quantizer(feats.extract_features.reshape(B * T, -1)).quantized.view(B, T, -1)
        ours_pred = ours.final_proj(feats.last_hidden_state)
    torch.testing.assert_close(_valid(frames, picked), _valid(frames, ref_q), atol=TOL, rtol=0)
    torch.testing.assert_close(_valid(frames, via_forward), _valid(frames, ref_q), atol=TOL, rtol=0)
    torch.testing.assert_close(_valid(frames, ours.project_q(picked)), _valid(frames, ref_targets), atol=TOL, rtol=0)
    torch.testing.assert_close(_valid(frames, ours_pred), _valid(frames, ref_pred), atol=TOL, rtol=0)
    assert len(torch.unique(codes)) > 1  # the argmax is not trivially constant


def test_group_norm_model_with_lengths_matches_transformers_per_utterance(tmp_path):
    # With lengths, our group-norm CNN normalizes layer 0 over each row's valid steps, so a padded batch
    # differs from transformers' padded batch (whose GroupNorm also sees the padding) by design. Each row
    # must equal what transformers computes for that utterance alone, unpadded.
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=3)
    ours = _load(hf, tmp_path)
    x, lengths, _ = padded_batch(seed=3)
    with torch.no_grad():
        out = ours(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            ref = hf(x[i : i + 1, :n]).logits[0]
            assert int(out.frame_lengths[i]) == ref.shape[0]
            torch.testing.assert_close(out.logits[i, : ref.shape[0]], ref, atol=TOL, rtol=0)
