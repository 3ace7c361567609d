import pytest
import torch

from xlsr.decode.greedy import greedy_decode
from xlsr.errors import XlsrError
from xlsr.model.ctc import ctc_collapse
from xlsr.text.vocab import Vocabulary


def _one_hot_logits(path, V, high=5.0):
    logits = torch.zeros(len(path), V)
    logits[torch.arange(len(path)), torch.tensor(path)] = high
    return logits


def test_ctc_collapse_repeats_and_blanks():
    # a a _ a b b _ _ b  ->  a a b b  (a blank separates repeated tokens)
    assert ctc_collapse([2, 2, 0, 2, 3, 3, 0, 0, 3]) == ([2, 2, 3, 3], [0, 3, 4, 8])
    assert ctc_collapse([0, 0, 0]) == ([], [])


def test_greedy_batch_respects_frame_lengths_and_timestamps():
    vocab = Vocabulary.build(["ab ba"], kind="chars")  # <blank> <unk> | a b
    a, b, bar = vocab.index("a"), vocab.index("b"), vocab.index("|")
    row0 = [a, a, 0, b, bar, b, a, a]
    row1 = [b, b, b, 0, a, a, a, a]  # only the first 5 frames are real
    logits = torch.stack([_one_hot_logits(row0, len(vocab)), _one_hot_logits(row1, len(vocab))])
    hyps = greedy_decode(logits, torch.tensor([8, 5]), vocab, timestamps=True)
    assert hyps[0].text == "ab ba" and hyps[0].tokens == ["a", "b", "|", "b", "a"]
    assert hyps[0].frames == [0, 3, 4, 5, 6]
    assert hyps[0].timestamps == pytest.approx([0.0, 0.06, 0.08, 0.10, 0.12])
    assert hyps[1].text == "ba" and hyps[1].timestamps == pytest.approx([0.0, 0.08])
    # the score is the summed log-probability of the best path
    expected = logits[1, :5].log_softmax(-1).max(-1).values.sum()
    assert hyps[1].score == pytest.approx(float(expected), rel=1e-5)
    assert greedy_decode(logits, torch.tensor([8, 5]), vocab)[0].timestamps is None


def test_greedy_rejects_mismatched_vocab_and_lengths():
    vocab = Vocabulary.build(["a b"], kind="phones")
    with pytest.raises(XlsrError, match="classes"):
        greedy_decode(torch.zeros(1, 3, 7), None, vocab)
    with pytest.raises(XlsrError, match="frame_lengths"):
        greedy_decode(torch.zeros(1, 3, len(vocab)), torch.tensor([4]), vocab)
    with pytest.raises(XlsrError, match="frame_lengths"):
        greedy_decode(torch.zeros(1, 3, len(vocab)), torch.tensor([-1]), vocab)
