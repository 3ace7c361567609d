"""Beam search settings at their edges and the scores of hypotheses the search reshapes: a beam of one, the LM
look-ahead that guides a narrow beam, readings kept per beam size, homophones merged by log-add, <unk> words."""

import math

import pytest
import torch
from decode_fixtures import AB_WORD_ARPA, PHONE_LEXICON, best_path_score, frames

from xlsr.decode.beam import BeamSearchConfig, BeamSearchDecoder
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary

EXHAUSTIVE = {"beam_size": 2000, "beam_threshold": 1e9}






def test_a_beam_of_one_is_allowed_and_a_beam_of_zero_is_not():
    vocab = Vocabulary.build(["a b"], kind="phones")
    logits = frames(vocab, ["a", "<blank>", {"b": 0.6}])
    hyp = BeamSearchDecoder(vocab, config=BeamSearchConfig(beam_size=1)).decode(logits)[0]
    assert hyp.text == "a b" and hyp.score == pytest.approx(best_path_score(logits), abs=1e-4)
    with pytest.raises(XlsrError, match="beam size: must be at least 1"):
        BeamSearchConfig(beam_size=0)


# ab is a likely word, ac and cd unlikely ones; ab and ac share their first letter
LOOKAHEAD_ARPA = """\\data\\
ngram 1=6
ngram 2=1

\\1-grams:
-3.0\t<unk>\t0
-99\t<s>\t0
-0.5\t</s>\t0
-0.3\tab\t0
-2.5\tac\t0
-1.0\tcd\t0

\\2-grams:
-0.1\tab cd

\\end\\
"""




@pytest.mark.parametrize("kind, tokens", [("chars", ["abcd"]), ("phones", ["a b c d"])])
def test_the_lm_look_ahead_guides_a_beam_of_one_inside_a_word(tmp_path, kind, tokens):
    # The acoustics prefer "c" on the first frame; a word LM knows that the word starting with "a" (ab: its
    # best completion, not ac) is likelier. A beam of one keeps the prefix ranked with its best completion's
    # unigram (flashlight's trie smeared by max; LexiconLM's look-ahead for a vocabulary without `|`), and
    # finds what the exhaustive search finds.
    vocab = Vocabulary.build(tokens, kind=kind)
    assert (vocab.word_boundary_id is not None) == (kind == "chars")
    lm = tmp_path / "words.arpa"
    lm.write_text(LOOKAHEAD_ARPA)
    lexicon = {"ab": "a b", "ac": "a c", "cd": "c d"}
    logits = frames(vocab, [{"c": 0.55, "a": 0.45}, {"b": 0.5, "d": 0.5}])
    words = {}
    for name, settings in (("exhaustive", EXHAUSTIVE), ("beam of one", {"beam_size": 1})):
        decoder = BeamSearchDecoder(vocab, lm=lm, lexicon=lexicon, config=BeamSearchConfig(lm_weight=1.0, **settings))
        words[name] = decoder.decode(logits)[0].words
    assert words == {"exhaustive": ["ab"], "beam of one": ["ab"]}


def test_a_small_beam_keeps_as_many_readings_of_the_phones_as_hypotheses(tmp_path):
    # Without `|` a phone sequence has several readings as lexicon words (a b = ab, or a then b); LexiconLM keeps
    # the best `beam_size` of them, as the search keeps its hypotheses. On these inputs a beam of 4 finds the
    # exhaustive search's words; keeping fewer readings loses them.
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b", "c"], kind="phones")
    lm = tmp_path / "words.arpa"
    lm.write_text(AB_WORD_ARPA)
    for seed, words in ((3, ["ba"]), (5, ["ba"]), (14, ["ab", "ba"])):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(1, 4 + seed % 4, len(vocab), generator=g) * 2
        found = []
        for settings in (EXHAUSTIVE, {"beam_size": 4, "beam_threshold": 1e9}):
            config = BeamSearchConfig(lm_weight=2.0, **settings)
            hyp = BeamSearchDecoder(vocab, lm=lm, lexicon=PHONE_LEXICON, config=config).decode(logits)[0]
            found.append((hyp.words, round(hyp.score, 4)))
        assert found[0] == found[1] and found[0][0] == words, seed


# three words, two of them spelled alike (t u); every word as likely
HOMOPHONE_ARPA = """\\data\\
ngram 1=6
ngram 2=1

\\1-grams:
-3.0\t<unk>\t0
-99\t<s>\t0
-0.5\t</s>\t0
-0.5\tto\t0
-0.5\ttwo\t0
-0.5\ttoo\t0

\\2-grams:
-0.1\tto too

\\end\\
"""


def test_log_add_merges_homophones_into_one_hypothesis_and_ranks_it_by_the_sum(tmp_path):
    # "t u" is two words (to, two), each a little less likely than "t o" (too): by the best path "too" wins, by
    # log-add (every way of reaching a labeling summed) "t u" does, and is listed once, first
    vocab = Vocabulary.build(["t u | o"], kind="phones")
    lm = tmp_path / "words.arpa"
    lm.write_text(HOMOPHONE_ARPA)
    logits = frames(vocab, ["t", {"u": 0.45, "o": 0.55}])
    lexicon = {"to": "t u", "two": "t u", "too": "t o"}

    def nbest(lexicon, log_add):
        config = BeamSearchConfig(lm_weight=1.0, log_add=log_add, nbest=3)
        return BeamSearchDecoder(vocab, lm=lm, lexicon=lexicon, config=config).decode_nbest(logits)[0]

    best_path = nbest(lexicon, False)
    assert [h.text for h in best_path] == ["t o", "t u"] and best_path[0].words == ["too"]
    one_of_them = {h.text: h.score for h in nbest({"to": "t u", "too": "t o"}, True)}
    merged = nbest(lexicon, True)
    assert [h.text for h in merged] == ["t u", "t o"] and merged[0].words[0] in ("to", "two")
    assert merged[0].score == pytest.approx(one_of_them["t u"] + math.log(2), abs=1e-4)
    assert merged[1].score == pytest.approx(one_of_them["t o"], abs=1e-4)


def test_an_unknown_word_of_a_phone_lexicon_scores_unk_score_not_word_score():
    # without `|`: "a b" is the start of abc and no word; with a finite unk_score it is read as <unk>
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b", "c"], kind="phones")
    logits = frames(vocab, ["c", "a", "b"])
    config = BeamSearchConfig(unk_score=-3.0, word_score=1.0)
    hyp = BeamSearchDecoder(vocab, lexicon={"abc": "a b c", "c": "c"}, config=config).decode(logits)[0]
    assert hyp.words == ["c", "<unk>"]
    assert hyp.score == pytest.approx(best_path_score(logits) + 1.0 - 3.0, abs=1e-4)


def test_a_hypothesis_inside_a_word_is_scored_without_the_penalty_the_search_gave_it():
    # nothing but "c a b" is heard and "a b" only starts a word: the search ends inside abc, and the score
    # reported is the acoustics and the one whole word's score, not the penalty that ranked it last
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b", "c"], kind="phones")
    logits = frames(vocab, ["c", "a", "b"])
    hyp = BeamSearchDecoder(vocab, lexicon={"abc": "a b c", "c": "c"},
                            config=BeamSearchConfig(word_score=1.0)).decode(logits)[0]
    assert hyp.text == "c a b" and hyp.words == ["c"]
    assert hyp.score == pytest.approx(best_path_score(logits) + 1.0, abs=1e-4)


def test_a_beam_threshold_of_zero_keeps_the_best():
    # without `|`, where LexiconLM prunes the readings of the phones by the same threshold
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b", "c"], kind="phones")
    logits = frames(vocab, ["a", {"b": 0.7}, "b", "a"])
    found = [BeamSearchDecoder(vocab, lexicon=PHONE_LEXICON, config=BeamSearchConfig(beam_threshold=threshold))
             .decode(logits)[0] for threshold in (0.0, 25.0)]
    assert found[0].text == found[1].text == "a b a" and found[0].score == pytest.approx(found[1].score)


def test_a_word_with_one_spelling_the_vocabulary_lacks_is_kept_without_a_warning(caplog):
    vocab = Vocabulary.build(["cat dog"], kind="chars")  # no k
    with caplog.at_level("WARNING", logger="xlsr.decode.beam"):
        decoder = BeamSearchDecoder(vocab, lexicon={"cat": [["c", "a", "t"], ["k", "a", "t"]], "dog": "d o g"})
    assert decoder.lexicon == {"cat": [["c", "a", "t", "|"]], "dog": [["d", "o", "g", "|"]]}
    assert "cannot be spelled" not in caplog.text
    with caplog.at_level("WARNING", logger="xlsr.decode.beam"):
        BeamSearchDecoder(vocab, lexicon={"cat": "k a t", "dog": "d o g"})
    assert "1 of 2 words cannot be spelled" in caplog.text and "'cat' has 'k'" in caplog.text
