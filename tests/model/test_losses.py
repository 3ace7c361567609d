import math

import pytest
import torch
import torch.nn.functional as F

from xlsr.model.losses import (
    contrastive_accuracy,
    contrastive_logits,
    contrastive_loss,
    diversity_loss,
    feature_penalty,
    perplexity,
    pretraining_loss,
    sample_negatives,
)


def test_negatives_are_other_masked_frames_of_same_utterance():
    g = torch.Generator().manual_seed(0)
    within, cross = sample_negatives(3, 7, 50, cross_sample_negatives=200, generator=g)
    assert within.shape == (3, 7, 50) and cross.shape == (3, 7, 200)
    assert within.min() >= 0 and within.max() < 7
    own = torch.arange(7).view(1, 7, 1)
    assert not (within == own).any()
    # Every other frame shows up: the draw covers [0, M) minus the frame itself.
    assert set(within[0, 3].tolist()) == {0, 1, 2, 4, 5, 6}
    flat_own = torch.arange(21).view(3, 7, 1)
    assert not (cross == flat_own).any() and cross.max() < 21
    # ... and cover every other frame of the batch's n = 21 (frame 3 is flat index 3)
    assert set(cross[0, 3].tolist()) == set(range(21)) - {3}
    assert (cross // 7 != torch.arange(3).view(3, 1, 1)).any()  # cross-sample ones reach other utterances


def test_single_masked_frame_does_not_crash():
    within, _ = sample_negatives(2, 1, 5)
    assert (within == 0).all()


def _loop_logits(pred, tgt, neg, cross, kappa, ids):
    B, M, _ = pred.shape
    flat = tgt.reshape(B * M, -1)
    flat_ids = ids.reshape(-1)
    out = torch.empty(B, M, 1 + neg.shape[-1] + cross.shape[-1])
    for b in range(B):
        for m in range(M):
            cands = [tgt[b, m]] + [tgt[b, int(j)] for j in neg[b, m]] + [flat[int(j)] for j in cross[b, m]]
            cand_ids = [ids[b, m]] + [ids[b, int(j)] for j in neg[b, m]] + [flat_ids[int(j)] for j in cross[b, m]]
            for k, (c, cid) in enumerate(zip(cands, cand_ids)):
                same = k > 0 and cid == ids[b, m]
                out[b, m, k] = -math.inf if same else F.cosine_similarity(pred[b, m], c, dim=0) / kappa
    return out


def test_contrastive_logits_match_loop_reference():
    g = torch.Generator().manual_seed(1)
    B, M, Fd = 3, 6, 8
    pred, tgt = torch.randn(B, M, Fd, generator=g), torch.randn(B, M, Fd, generator=g)
    ids = torch.randint(0, 3, (B, M), generator=g)  # few codewords: some distractors equal their positive
    neg, cross = sample_negatives(B, M, 9, 4, generator=g)
    logits = contrastive_logits(pred, tgt, neg, 0.1, cross, ids)
    ref = _loop_logits(pred, tgt, neg, cross, 0.1, ids)
    assert logits.dtype == torch.float32
    assert torch.equal(torch.isinf(logits), torch.isinf(ref)) and torch.isinf(logits).any()
    finite = ~torch.isinf(ref)
    torch.testing.assert_close(logits[finite], ref[finite], rtol=1e-5, atol=1e-5)


def test_identical_vectors_get_minus_inf_without_ids():
    g = torch.Generator().manual_seed(0)
    tgt = torch.randn(1, 4, 5, generator=g)
    tgt[0, 2] = tgt[0, 0]
    tgt[0, 3, 0] = tgt[0, 1, 0]  # one equal coordinate is not an identical vector: frame 3's distractor 1 stays
    neg = torch.tensor([[[2, 1], [0, 2], [0, 1], [0, 1]]])
    logits = contrastive_logits(torch.randn(1, 4, 5, generator=g), tgt, neg, 0.1)
    assert torch.isinf(logits[0, 0, 1]) and torch.isinf(logits[0, 2, 1])
    assert torch.isfinite(logits[0, 1]).all() and torch.isfinite(logits[0, 3]).all()


def test_loss_accuracy_and_diversity():
    logits = torch.tensor([[[3.0, 1.0, -math.inf], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0]]])
    expected = sum(-torch.log_softmax(row, 0)[0] for row in logits[0])
    torch.testing.assert_close(contrastive_loss(logits), expected)
    # Frame 0 right, frame 1 wrong, frame 2 all tie: counts as wrong.
    assert abs(contrastive_accuracy(logits).item() - 1 / 3) < 1e-6
    assert diversity_loss(torch.tensor(640.0), 640).item() == 0.0
    assert diversity_loss(torch.tensor(160.0), 640).item() == 0.75


def test_perplexity_of_uniform_and_one_hot_codebooks():
    uniform = torch.full((7, 2, 4), 0.25)  # (N, G, V): every entry equally likely in both groups
    assert perplexity(uniform).item() == pytest.approx(8.0, rel=1e-5)
    one_hot = torch.zeros(7, 2, 4)
    one_hot[:, :, 1] = 1.0
    assert perplexity(one_hot).item() == pytest.approx(2.0, rel=1e-5)


def test_feature_penalty_skips_padded_frames():
    feats = torch.zeros(2, 3, 2)
    feats[0] = 1.0
    feats[1, 0] = 2.0
    feats[1, 1:] = 100.0  # padding: must not count
    pad = torch.tensor([[False, False, False], [False, True, True]])
    # valid: 3 frames of 1s (6 values of 1) and 1 frame of 2s (2 values of 4): (6 + 8) / 8
    assert feature_penalty(feats, pad).item() == pytest.approx(14 / 8)
    assert feature_penalty(feats[:1], None).item() == pytest.approx(1.0)


def test_pretraining_loss_weights_every_term_by_the_masked_frames():
    logits = torch.tensor([[[3.0, 1.0, -math.inf], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0]]])  # n = 3 masked frames
    ppl, penalty = torch.tensor(160.0), torch.tensor(0.5, requires_grad=True)
    out = pretraining_loss(logits, ppl, 640, penalty, diversity_weight=0.1, feature_penalty_weight=10.0)
    torch.testing.assert_close(out.contrastive, contrastive_loss(logits))
    assert out.diversity.item() == pytest.approx(0.1 * 0.75 * 3)
    assert out.feature_penalty.item() == pytest.approx(10.0 * 0.5 * 3)
    torch.testing.assert_close(out.loss, out.contrastive + out.diversity + out.feature_penalty)
    # beta = 0: the penalty is reported with beta taken as 1 (per masked frame, like the weighted one, so the
    # trainer's log of feature_penalty / n is the plain mean) and stays out of the loss (and of the graph).
    off = pretraining_loss(logits, ppl, 640, penalty, diversity_weight=0.1, feature_penalty_weight=0.0)
    assert off.feature_penalty.item() == pytest.approx(0.5 * 3) and not off.feature_penalty.requires_grad
    torch.testing.assert_close(off.loss, off.contrastive + off.diversity)

