import random

import jiwer
import pytest

from xlsr.errors import XlsrError
from xlsr.text.metrics import (
    EditCounts,
    cer,
    corpus_counts,
    edit_ops,
    error_rate,
    grouped_counts,
    per,
    utterance_counts,
    wer,
)


def _random_text(rng, alphabet, max_words):
    return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                    for _ in range(rng.randint(1, max_words)))


def test_edit_ops_known_cases():
    assert edit_ops("kitten", "sitting") == EditCounts(2, 0, 1, 6)
    assert edit_ops([], ["a"]) == EditCounts(0, 0, 1, 0)
    assert edit_ops(["a", "b"], []) == EditCounts(0, 2, 0, 2)
    assert edit_ops("abc", "abc").errors == 0


def test_word_counts_agree_with_jiwer_on_random_strings():
    rng = random.Random(0)
    for _ in range(300):
        ref, hyp = _random_text(rng, "abcd", 8), _random_text(rng, "abcd", 8)
        out = jiwer.process_words(ref, hyp)
        ours = utterance_counts(ref, hyp, "word")
        assert (ours.substitutions, ours.deletions, ours.insertions, ours.hits) == (
            out.substitutions, out.deletions, out.insertions, out.hits)
        assert wer(ref, hyp) == pytest.approx(out.wer)


def test_corpus_wer_cer_agree_with_jiwer():
    rng = random.Random(1)
    refs = [_random_text(rng, "abcde", 6) for _ in range(50)]
    hyps = [_random_text(rng, "abcde", 6) for _ in range(50)]
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))
    # our CER ignores spaces; jiwer counts them, so compare on space-free strings
    nospace = [r.replace(" ", "") for r in refs], [h.replace(" ", "") for h in hyps]
    assert cer(refs, hyps) == pytest.approx(jiwer.cer(*nospace))
    counts = corpus_counts(refs, hyps, "char")
    out = jiwer.process_characters(*nospace)
    assert (counts.substitutions, counts.deletions, counts.insertions) == (
        out.substitutions, out.deletions, out.insertions)


def test_per_excludes_word_boundary_and_agrees_with_jiwer():
    rng = random.Random(2)
    phones = ["a", "ʃ", "iː", "t", "oʊ"]
    for _ in range(100):
        ref = " | ".join(" ".join(rng.choice(phones) for _ in range(rng.randint(1, 4)))
                         for _ in range(rng.randint(1, 3)))
        hyp = " ".join(rng.choice(phones + ["|"]) for _ in range(rng.randint(0, 10)))
        ref_nb = " ".join(t for t in ref.split() if t != "|")
        hyp_nb = " ".join(t for t in hyp.split() if t != "|")
        if hyp_nb:
            assert per(ref, hyp) == pytest.approx(jiwer.wer(ref_nb, hyp_nb))
        else:
            assert per(ref, hyp) == 1.0  # every reference phone deleted
    # boundaries alone never count
    assert per("a | b", "a b") == 0.0


def test_cer_ignores_pipes_and_spaces():
    assert cer("ab cd", "ab|cd") == 0.0
    assert cer("abcd", "abxd") == pytest.approx(0.25)


def test_an_unk_output_is_one_character_error():
    assert utterance_counts("ab", "a<unk>b", "char") == utterance_counts("ab", "axb", "char") == EditCounts(0, 0, 1, 2)
    assert utterance_counts("abc", "a<unk>c", "char") == EditCounts(1, 0, 0, 3)


def test_grouped_counts_sum_to_total():
    refs, hyps, langs = ["a b", "c d e", "f"], ["a x", "c d", "f g"], ["en", "fr", "en"]
    g = grouped_counts(refs, hyps, langs, "word")
    assert g["en"] == EditCounts(1, 0, 1, 3)
    assert g["fr"] == EditCounts(0, 1, 0, 3)
    assert g["all"] == g["en"] + g["fr"]
    assert g["all"].rate == pytest.approx(error_rate(refs, hyps, "word"))


def test_mismatched_lengths_and_units_raise():
    with pytest.raises(XlsrError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
    with pytest.raises(XlsrError, match="unit"):
        error_rate("a", "a", unit="syllable")
