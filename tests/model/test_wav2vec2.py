import pytest
import torch
import torch.nn.functional as F
from model_fixtures import assert_padded_batch_equals_single_runs, micro_config, sine_batch

from xlsr import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model
from xlsr.errors import XlsrError
from xlsr.model.losses import contrastive_loss, diversity_loss
from xlsr.model.masking import compute_mask_indices


def test_shapes_of_every_output(micro):
    torch.manual_seed(0)
    x = sine_batch(2, 8000)
    model = Wav2Vec2Model(micro)
    out = model(x, torch.tensor([8000, 6000]), output_hidden_states=True)
    T = int(model.frame_lengths(torch.tensor([8000]))[0])
    assert T == (8000 - 400) // 320 + 1
    assert out.last_hidden_state.shape == (2, T, 32) and out.extract_features.shape == (2, T, 32)
    assert out.frame_lengths.tolist() == [T, (6000 - 400) // 320 + 1]
    assert len(out.hidden_states) == micro.num_layers + 1
    pt = Wav2Vec2ForPreTraining(micro)(x, generator=torch.Generator().manual_seed(0))
    M = pt.mask_time_indices.sum(1)[0].item()
    assert pt.logits.shape == (2, M, 1 + micro.num_negatives) and pt.num_masked == 2 * M
    codes, frames = Wav2Vec2ForPreTraining(micro).quantize(x)
    assert codes.shape == (2, T, 2) and codes.max() < 8


def test_padded_batch_equals_single_utterance_runs():
    torch.manual_seed(0)
    cfg = Wav2Vec2Config.preset("tiny")
    model = Wav2Vec2Model(cfg).eval()
    lengths = [16000, 11000, 7000]
    x = sine_batch(3, 16000)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    assert_padded_batch_equals_single_runs(model, x, lengths)


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(micro_config(feature_penalty_weight=10.0)).train()
    out = model(sine_batch(3, 6400), torch.tensor([6400, 6400, 5000]), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def _reference_loss(model, x, lengths, mask, negatives):
    """Plain loops over utterances, masked frames and negatives (eval mode: argmax quantizer, no dropout)."""
    cfg, w, q = model.config, model.wav2vec2, model.quantizer
    feats, frames = w.features(x, lengths)
    z = w.feature_norm(feats)
    c = w(x, lengths, mask_time_indices=mask).last_hidden_state
    G, V = cfg.num_codevector_groups, cfg.num_codevectors_per_group
    book = q.codevectors.view(G, V, -1)
    B = x.shape[0]
    masked = [torch.nonzero(mask[b]).flatten().tolist() for b in range(B)]
    targets, preds, codes, probs = [], [], [], []
    for b in range(B):
        tb, pb, cb = [], [], []
        for t in masked[b]:
            logits = q.weight_proj(z[b, t]).view(G, V)
            idx = logits.argmax(-1)
            tb.append(model.project_q(torch.cat([book[g, idx[g]] for g in range(G)])))
            pb.append(model.final_proj(c[b, t]))
            cb.append(tuple(idx.tolist()))
            probs.append(logits.softmax(-1))
        targets.append(tb), preds.append(pb), codes.append(cb)
    nce = 0.0
    for b in range(B):
        for j in range(len(masked[b])):
            row = [F.cosine_similarity(preds[b][j], targets[b][j], dim=0) / cfg.logit_temp]
            for k in negatives[b, j].tolist():
                same = codes[b][k] == codes[b][j]
                row.append(torch.tensor(float("-inf")) if same else
                           F.cosine_similarity(preds[b][j], targets[b][k], dim=0) / cfg.logit_temp)
            nce = nce - torch.log_softmax(torch.stack(row), 0)[0]
    avg = torch.stack(probs).mean(0)
    ppl = torch.exp(-(avg * torch.log(avg + 1e-7)).sum(-1)).sum()
    n = sum(len(m) for m in masked)
    valid = torch.cat([feats[b, : frames[b]] for b in range(B)])
    penalty = valid.pow(2).mean()
    return nce + cfg.diversity_weight * (G * V - ppl) / (G * V) * n + cfg.feature_penalty_weight * penalty * n


def test_loss_equals_loop_reference():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(micro_config(feature_penalty_weight=10.0, num_codevectors_per_group=3)).eval()
    x, lengths = sine_batch(2, 6400), torch.tensor([6400, 5400])
    frames = model.wav2vec2.frame_lengths(lengths)
    g = torch.Generator().manual_seed(3)
    mask = compute_mask_indices(frames, int(frames.max()), 0.5, 3, 2, g)
    M = int(mask.sum(1)[0])
    negatives = torch.randint(0, M, (2, M, 10), generator=g)
    out = model(x, lengths, mask_time_indices=mask, negative_indices=negatives)
    with torch.no_grad():
        ref = _reference_loss(model, x, lengths, mask, negatives)
    assert out.neg_is_pos > 0  # V=3: many distractors share their positive's codeword
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.contrastive_loss, contrastive_loss(out.logits))
    torch.testing.assert_close(out.diversity_loss, 0.1 * diversity_loss(out.prob_perplexity, 6) * 2 * M)


def test_layerdrop_is_reproducible_and_keeps_every_parameter_in_the_graph():
    torch.manual_seed(0)
    cfg = micro_config(num_layers=6, layerdrop=0.5)
    a, b = Wav2Vec2Model(cfg).train(), Wav2Vec2Model(cfg).train()
    b.load_state_dict(a.state_dict())
    x = sine_batch(2, 4000)
    outs = []
    for model in (a, b):
        model.set_layerdrop_seed(17)
        outs.append(model(x).last_hidden_state)
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)  # same seed: same layers skipped on every rank
    outs[0].sum().backward()
    assert all(p.grad is not None for p in a.parameters())
    skipped = [i for i, layer in enumerate(a.encoder.layers) if not layer.feed_forward.fc1.weight.grad.any()]
    assert 0 < len(skipped) < 6  # seed 17 skips some layers but not all


def test_layerdrop_skips_about_its_share_of_layers_and_a_skipped_layer_passes_its_input_on():
    """Post-LN blocks: a skipped layer's hidden state is its input, bit for bit; a layer that runs changes it."""
    torch.manual_seed(0)
    encoder = Wav2Vec2Model(micro_config(num_layers=10, layerdrop=0.2, layer_norm_first=False)).encoder.train()
    x = torch.randn(1, 6, 32)
    skipped = []
    with torch.no_grad():
        for seed in range(20):
            encoder.set_layerdrop_seed(seed)
            _, hidden = encoder(x, output_hidden_states=True)
            skipped += [torch.equal(hidden[i + 1], hidden[i]) for i in range(10)]
        assert 0.12 < sum(skipped) / len(skipped) < 0.28, sum(skipped)  # 200 draws at 0.2
        encoder.eval()
        _, hidden = encoder(x, output_hidden_states=True)
    assert not any(torch.equal(hidden[i + 1], hidden[i]) for i in range(10))  # none skipped in evaluation


def test_autocast_keeps_losses_and_logits_fp32(micro):
    model = Wav2Vec2ForPreTraining(micro)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(sine_batch(2, 4000), generator=torch.Generator().manual_seed(0))
    assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.float32
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize(
    "waveforms, lengths, match",
    [
        (torch.zeros(2, 1, 4000), None, "expected shape \\(batch, samples\\)"),
        (torch.zeros(4000), None, "unsqueeze"),
        (torch.zeros(2, 4000, dtype=torch.int16), None, "floating-point"),
        (torch.zeros(2, 300), None, "receptive field"),
        (torch.zeros(2, 4000), torch.tensor([4000]), "shape \\(2,\\)"),
        (torch.zeros(2, 4000), torch.tensor([4000, 5000]), "exceeds"),
        (torch.zeros(2, 4000), torch.tensor([4000, 200]), "shorter than the CNN"),
        (torch.zeros(2, 4000), torch.tensor([4000.0, 3000.0]), "integer"),
    ],
)
def test_bad_input_is_an_xlsr_error(micro, waveforms, lengths, match):
    with pytest.raises(XlsrError, match=match):
        Wav2Vec2Model(micro)(waveforms, lengths)
    assert issubclass(XlsrError, ValueError)


def test_bad_masks_are_xlsr_errors(micro):
    model = Wav2Vec2ForPreTraining(micro)
    x = sine_batch(2, 4000)
    T = int(model.wav2vec2.frame_lengths(torch.tensor([4000]))[0])
    uneven = torch.zeros(2, T, dtype=torch.bool)
    uneven[0, :3], uneven[1, :2] = True, True
    with pytest.raises(XlsrError, match="same number"):
        model(x, mask_time_indices=uneven)
    with pytest.raises(XlsrError, match="bool tensor"):
        model(x, mask_time_indices=torch.zeros(2, T + 1, dtype=torch.bool))
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[:, :4] = True  # M = 4 masked frames per row
    for negatives, match in ((torch.full((2, 4, 3), 4), r"in \[0, 4\).*got \[4, 4\]"),
                             (torch.full((2, 4, 3), -1), r"got \[-1, -1\]"),
                             (torch.full((2, 4, 3), 2.7), "integer positions.*float32")):
        with pytest.raises(XlsrError, match=f"negative_indices: .*{match}"):
            model(x, mask_time_indices=mask, negative_indices=negatives)


def test_ctc_head_loss_freeze_and_weights_from_pretraining():
    torch.manual_seed(0)
    cfg = micro_config(mask_prob=0.3, mask_length=2, mask_channel_prob=0.2, mask_channel_length=4, final_dropout=0.1)
    pt = Wav2Vec2ForPreTraining(cfg)
    ctc = Wav2Vec2ForCTC(cfg, vocab_size=7)
    ctc.wav2vec2.load_state_dict(pt.wav2vec2.state_dict())
    x, lengths = sine_batch(2, 8000), torch.tensor([8000, 7000])
    labels = torch.tensor([[3, 4, 5, 6], [2, 2, 0, 0]])
    ctc.eval()
    out = ctc(x, lengths, labels)
    assert out.logits.shape == (2, 24, 7) and out.logits.dtype == torch.float32
    torch.testing.assert_close(ctc.lm_head(pt.wav2vec2(x, lengths).last_hidden_state), out.logits)
    ref = F.ctc_loss(out.logits.log_softmax(-1).transpose(0, 1), labels, out.frame_lengths, torch.tensor([4, 2]),
                     blank=0, reduction="mean", zero_infinity=True)
    torch.testing.assert_close(out.loss, ref)
    # Training applies time and channel masks: a different output than eval, reproducible with a generator.
    ctc.train()
    t1 = ctc(x, lengths, generator=torch.Generator().manual_seed(1)).logits
    assert not torch.allclose(t1, out.logits)
    ctc.freeze_feature_encoder()
    ctc(x, lengths, labels, generator=torch.Generator().manual_seed(1)).loss.backward()
    assert all(p.grad is None for p in ctc.wav2vec2.feature_encoder.parameters())
    assert ctc.lm_head.weight.grad.abs().sum() > 0 and ctc.wav2vec2.mask_embedding.grad is not None


def _frozen_ctc_and_padded_batch():
    """A training-mode CTC model (masks, dropouts, LayerDrop on) with a frozen CNN, and a padded batch."""
    torch.manual_seed(0)
    cfg = micro_config(mask_prob=0.3, mask_length=2, min_masks=1, mask_channel_prob=0.2, mask_channel_length=4,
                       final_dropout=0.1, activation_dropout=0.1, dropout_input=0.1, layerdrop=0.3)
    model = Wav2Vec2ForCTC(cfg, vocab_size=7).train()
    model.freeze_feature_encoder()
    lengths = torch.tensor([8000, 5300, 3100])
    x = sine_batch(3, 8000)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 0.0  # the data loader's zero padding
    labels = torch.tensor([[3, 4, 5, 6], [2, 2, 0, 0], [5, 0, 0, 0]])
    return model, x, lengths, labels


def _loss_and_grads(model, seed, **inputs):
    model.zero_grad(set_to_none=True)
    model.set_layerdrop_seed(seed)
    torch.manual_seed(seed)  # dropout draws
    out = model(**inputs, generator=torch.Generator().manual_seed(seed))
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_ctc_from_precomputed_cnn_features_matches_the_waveform_path():
    model, x, lengths, labels = _frozen_ctc_and_padded_batch()
    ref, ref_grads = _loss_and_grads(model, 5, waveforms=x, lengths=lengths, labels=labels)
    # What a feature cache holds: each utterance through the CNN alone, unpadded; then zero-padded to the batch's T.
    T = ref.logits.shape[1]
    with torch.no_grad():
        rows = [model.wav2vec2.feature_encoder(x[i : i + 1, :n])[0] for i, n in enumerate(lengths.tolist())]
    feats = torch.zeros(3, T, rows[0].shape[-1])
    for i, r in enumerate(rows):
        feats[i, : r.shape[0]] = r
    frames = torch.tensor([r.shape[0] for r in rows])
    assert frames.tolist() == ref.frame_lengths.tolist() and frames.tolist()[0] == T
    out, grads = _loss_and_grads(model, 5, features=feats, frame_lengths=frames, labels=labels)
    assert out.logits.shape == ref.logits.shape
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-6, atol=1e-6)
    for i, n in enumerate(frames.tolist()):  # padded frames' logits are never used
        torch.testing.assert_close(out.logits[i, :n], ref.logits[i, :n], rtol=1e-5, atol=1e-5)
    # The trainable parts after the CNN (feature_norm, projection, Transformer, head) get the same gradients,
    # up to the CNN's rounding (an unpadded conv sums in another order: ~1e-6 on gradients of order 1).
    assert set(grads) == set(ref_grads) and "wav2vec2.feature_norm.weight" in grads
    assert not any(n.startswith("wav2vec2.feature_encoder") for n in grads)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=2e-5, msg=name)
    # Another seed draws other masks: the comparison above is not vacuous.
    other, _ = _loss_and_grads(model, 6, waveforms=x, lengths=lengths, labels=labels)
    assert not torch.allclose(other.loss, ref.loss)


def test_encoder_from_its_own_features_output_is_identical(micro):
    model = Wav2Vec2Model(micro).eval()
    x, lengths = sine_batch(2, 6000), torch.tensor([6000, 4100])
    with torch.no_grad():
        ref = model(x, lengths, output_hidden_states=True)
        feats, frames = model.features(x, lengths)
        out = model(features=feats, frame_lengths=frames, output_hidden_states=True)
        full = model(features=feats)  # no frame lengths: every frame is valid
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(out.extract_features, ref.extract_features, atol=0, rtol=0)
    assert out.frame_lengths.tolist() == ref.frame_lengths.tolist() and len(out.hidden_states) == 3
    assert full.frame_lengths.tolist() == [feats.shape[1]] * 2
    assert not torch.allclose(full.last_hidden_state[1], ref.last_hidden_state[1])  # row 1 now attends its padding


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "give waveforms"),
        ({"waveforms": torch.zeros(2, 4000), "features": torch.zeros(2, 12, 32)}, "not both"),
        ({"waveforms": torch.zeros(2, 4000), "frame_lengths": torch.tensor([12, 12])}, "only used with precomputed"),
        ({"features": torch.zeros(2, 12, 16)}, "expected shape \\(batch, frames >= 1, 32\\)"),
        ({"features": torch.zeros(2, 12, 32, dtype=torch.long)}, "floating-point"),
        ({"features": torch.zeros(2, 12, 32), "frame_lengths": torch.tensor([12])}, "shape \\(2,\\)"),
        ({"features": torch.zeros(2, 12, 32), "frame_lengths": torch.tensor([12, 13])}, "allowed: 1..12"),
        ({"features": torch.zeros(2, 12, 32), "frame_lengths": torch.tensor([12, 0])}, "allowed: 1..12"),
        ({"features": torch.zeros(2, 12, 32), "frame_lengths": torch.tensor([12.0, 3.0])}, "integer"),
    ],
)
def test_bad_precomputed_features_are_xlsr_errors(micro, kwargs, match):
    with pytest.raises(XlsrError, match=match):
        Wav2Vec2Model(micro)(**kwargs)
    with pytest.raises(XlsrError, match=match):
        Wav2Vec2ForCTC(micro, vocab_size=5)(**kwargs)


def test_spec_augment_draws_masks_from_the_config_and_refuses_explicit_ones():
    cfg = micro_config(mask_prob=0.5, mask_length=2, min_masks=1, mask_channel_prob=0.3, mask_channel_length=4)
    model = Wav2Vec2Model(cfg).eval()  # no dropout: only the masks change the output
    x = sine_batch(2, 6000)
    with torch.no_grad():
        plain = model(x).last_hidden_state
        a = model(x, spec_augment=True, generator=torch.Generator().manual_seed(1)).last_hidden_state
        b = model(x, spec_augment=True, generator=torch.Generator().manual_seed(1)).last_hidden_state
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, plain)
    T = plain.shape[1]
    with pytest.raises(XlsrError, match="spec_augment"):
        model(x, mask_time_indices=torch.zeros(2, T, dtype=torch.bool), spec_augment=True)


def test_features_keep_cpu_frame_lengths_and_pretraining_takes_a_cpu_mask(micro):
    model = Wav2Vec2ForPreTraining(micro).eval()
    x, lengths = sine_batch(2, 6400), torch.tensor([6400, 5400])
    feats, frames = model.wav2vec2.features(x, lengths)
    assert frames.device.type == "cpu" and frames.tolist() == model.wav2vec2.frame_lengths(lengths).tolist()
    mask = torch.zeros(2, feats.shape[1], dtype=torch.bool)
    mask[:, 2:5] = True
    out = model(x, lengths, mask_time_indices=mask, generator=torch.Generator().manual_seed(0))
    assert out.num_masked == 6 and out.logits.shape[:2] == (2, 3)
