"""make_decoder, which `xlsr transcribe` and `xlsr evaluate` decode with: each option given reaches the search."""

from types import SimpleNamespace

import pytest
import torch
from decode_fixtures import frames

from xlsr.decode.beam import BeamSearchConfig, BeamSearchDecoder
from xlsr.decode.transcribe import make_decoder
from xlsr.model import Wav2Vec2Config
from xlsr.text.vocab import Vocabulary


def _ctc(vocab):
    # make_decoder reads the vocabulary and the model's frame stride (the standard CNN's 320 samples)
    return SimpleNamespace(vocab=vocab, source="model", model=SimpleNamespace(config=Wav2Vec2Config()))


def test_a_lexicon_without_an_lm_decodes_lexicon_words(tmp_path):
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    logits = frames(vocab, ["a", {"c": 0.5, "b": 0.4}, "|", "a", "b"])
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("ab\n")
    assert make_decoder(_ctc(vocab))(logits, torch.tensor([5]))[0].text == "ac ab"  # greedy
    hyp = make_decoder(_ctc(vocab), lexicon=lexicon)(logits, torch.tensor([5]))[0]
    assert hyp.text == "ab ab" and hyp.words == ["ab", "ab"]


def test_the_word_score_reaches_the_beam_search():
    vocab = Vocabulary.build(["a b"], kind="chars")
    logits = frames(vocab, ["a", "|", "b", "|", "a"])
    lengths = torch.tensor([5])
    for word_score in (0.0, -1.5, 2.0):
        hyp = make_decoder(_ctc(vocab), beam=8, word_score=word_score)(logits, lengths)[0]
        want = BeamSearchDecoder(vocab, config=BeamSearchConfig(beam_size=8, word_score=word_score)).decode(logits)[0]
        assert hyp.text == "a b a" and hyp.score == pytest.approx(want.score)
    scores = [make_decoder(_ctc(vocab), beam=8, word_score=s)(logits, lengths)[0].score for s in (0.0, -1.5)]
    assert scores[1] == pytest.approx(scores[0] - 2 * 1.5, abs=1e-4)  # two `|` between three words

