import math

import pytest
import torch
from model_fixtures import micro_config, sine_batch

from xlsr import Wav2Vec2ForCTC
from xlsr.errors import XlsrError
from xlsr.model.ctc import (
    ctc_best_path,
    ctc_best_path_segments,
    ctc_best_path_with_starts,
    ctc_collapse,
    ctc_loss,
    ctc_segments,
)


def _logits_of(probs) -> torch.Tensor:
    """Logits whose softmax is exactly `probs` (B, T, V)."""
    return torch.tensor(probs, dtype=torch.float64).log().float()


def test_ctc_loss_matches_a_hand_sum_over_paths():
    # Row 0: label [1] in 2 frames: paths (1,1), (0,1), (1,0). Row 1: label [1, 2] in 2 frames: only (1, 2).
    p = [[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]],
         [[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]]]
    logits = _logits_of(p)
    labels = torch.tensor([[1, 0], [1, 2]])
    row0 = -math.log(0.5 * 0.1 + 0.2 * 0.1 + 0.5 * 0.6) / 1  # per-target-length
    row1 = -math.log(0.7 * 0.4) / 2
    loss = ctc_loss(logits, torch.tensor([2, 2]), labels, None)  # lengths inferred: labels > 0
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    explicit = ctc_loss(logits, torch.tensor([2, 2]), labels, torch.tensor([1, 2]))
    assert explicit.item() == pytest.approx(loss.item(), rel=1e-6)


def test_ctc_loss_sum_and_none_keep_each_utterance_unnormalised():
    # fairseq's reduction: each utterance's -log p (not divided by its label count); the same two rows as above
    p = [[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]],
         [[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]]]
    logits, labels, frames = _logits_of(p), torch.tensor([[1, 0], [1, 2]]), torch.tensor([2, 2])
    rows = [-math.log(0.5 * 0.1 + 0.2 * 0.1 + 0.5 * 0.6), -math.log(0.7 * 0.4)]
    assert ctc_loss(logits, frames, labels, None, reduction="none").tolist() == pytest.approx(rows, rel=1e-5)
    assert ctc_loss(logits, frames, labels, None, reduction="sum").item() == pytest.approx(sum(rows), rel=1e-5)


def test_ctc_loss_zeroes_impossible_rows_and_runs_in_fp32():
    logits = _logits_of([[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]] * 2).to(torch.bfloat16)
    # Row 1 needs 3 frames for "1 1 2" (a blank between the repeats) but has 2: infinite, zeroed.
    labels = torch.tensor([[1, 0, 0], [1, 1, 2]])
    loss = ctc_loss(logits, torch.tensor([2, 2]), labels, None)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    row0 = -math.log(0.5 * 0.1 + 0.2 * 0.1 + 0.5 * 0.6)
    assert loss.item() == pytest.approx(row0 / 2, rel=2e-2)  # bf16 input rounding


def test_ctc_loss_rejects_bad_labels():
    logits = torch.zeros(2, 3, 4)
    with pytest.raises(XlsrError, match="labels: expected shape"):
        ctc_loss(logits, torch.tensor([3, 3]), torch.tensor([1, 2]), None)
    with pytest.raises(XlsrError, match="integer token ids"):
        ctc_loss(logits, torch.tensor([3, 3]), torch.ones(2, 2), None)
    with pytest.raises(XlsrError, match="label_lengths"):
        ctc_loss(logits, torch.tensor([3, 3]), torch.ones(2, 2, dtype=torch.long), torch.tensor([1]))


def test_best_path_collapses_repeats_drops_blanks_and_stops_at_the_frame_length():
    # Frame argmaxes: row 0: 2 2 0 2 3 3 0 1 | row 1: 1 0 1 1 (then padding frames argmax 3, ignored).
    paths = [[2, 2, 0, 2, 3, 3, 0, 1], [1, 0, 1, 1, 3, 3, 3, 3]]
    logits = torch.full((2, 8, 4), -1.0)
    for b, path in enumerate(paths):
        logits[b, torch.arange(8), torch.tensor(path)] = 2.0
    assert ctc_best_path(logits, torch.tensor([8, 4])) == [[2, 2, 3, 1], [1, 1]]
    assert ctc_best_path(logits, None) == [[2, 2, 3, 1], [1, 1, 3]]
    assert ctc_best_path(logits, torch.tensor([0, 1])) == [[], [1]]
    assert ctc_best_path_with_starts(logits, torch.tensor([8, 4])) == [([2, 2, 3, 1], [0, 3, 4, 7]), ([1, 1], [0, 2])]
    assert ctc_collapse([0, 0, 0]) == ([], [])
    # each token's run: the first frame and the frame after the last (row 0: 2 2 | 0 | 2 | 3 3 | 0 | 1)
    assert ctc_best_path_segments(logits, torch.tensor([8, 4])) == \
        [([2, 2, 3, 1], [0, 3, 4, 7], [2, 4, 6, 8]), ([1, 1], [0, 2], [1, 4])]
    assert ctc_segments([]) == ([], [], []) and ctc_segments([0, 5, 5]) == ([5], [1], [3])


def test_set_encoder_trainable_keeps_the_head_and_optionally_the_cnn():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(micro_config(), vocab_size=5)
    cnn = {id(p) for p in model.wav2vec2.feature_encoder.parameters()}
    rest = [p for p in model.wav2vec2.parameters() if id(p) not in cnn]
    model.freeze_feature_encoder()

    model.set_encoder_trainable(False)
    assert not any(p.requires_grad for p in model.wav2vec2.parameters())
    assert all(p.requires_grad for p in model.lm_head.parameters())
    x = sine_batch(2, 4000)
    model(x, labels=torch.tensor([[1, 2], [3, 0]])).loss.backward()
    assert all(p.grad is None for p in model.wav2vec2.parameters()) and model.lm_head.weight.grad is not None

    model.set_encoder_trainable(True)  # keep_cnn_frozen by default
    assert all(p.requires_grad for p in rest)
    assert not any(p.requires_grad for p in model.wav2vec2.feature_encoder.parameters())
    model.set_encoder_trainable(True, keep_cnn_frozen=False)
    assert all(p.requires_grad for p in model.wav2vec2.parameters())
