import json
import random
import tracemalloc

import jiwer
import pytest

from xlsr.errors import XlsrError
from xlsr.text import metrics
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
    assert wer("a b", "a|b") == 0.0  # a char-model transcript's `|` separates words too
    assert cer("abcd", "abxd") == pytest.approx(0.25)


def test_an_unk_output_is_one_character_error():
    assert utterance_counts("ab", "a<unk>b", "char") == utterance_counts("ab", "axb", "char") == EditCounts(0, 0, 1, 2)
    assert utterance_counts("abc", "a<unk>c", "char") == EditCounts(1, 0, 0, 3)


def test_grouped_counts_sum_to_total():
    refs, hyps, langs = ["a b", "c d e", "f"], ["a x", "c d", "f g"], ["en", "fr", "en"]
    g = grouped_counts(refs, hyps, langs, "word")
    assert g == {"en": EditCounts(1, 0, 1, 3), "fr": EditCounts(0, 1, 0, 3)}  # the groups only, no total among them
    assert sum(g.values(), EditCounts()) == corpus_counts(refs, hyps, "word")


def test_a_group_named_all_is_one_group_and_counted_once():
    # "all" is a language code (ISO 639-3 Allar); the total used to be stored under that key, over the group's own
    refs, hyps, langs = ["a b", "c d"], ["a x", "c d"], ["all", "es"]
    g = grouped_counts(refs, hyps, langs, "word")
    assert g == {"all": EditCounts(1, 0, 0, 2), "es": EditCounts(0, 0, 0, 2)}
    assert sum(g.values(), EditCounts()).rate == pytest.approx(1 / 4)


def test_a_rate_without_reference_units_is_null_in_json():
    # JSON has no Infinity: json.dumps writes it, but jq and JSON.parse refuse the file
    none = EditCounts(insertions=2)
    assert none.rate == float("inf") and none.to_dict()["rate"] is None
    json.dumps(none.to_dict(), allow_nan=False)
    assert EditCounts().to_dict()["rate"] == 0.0 and EditCounts(1, 0, 0, 4).to_dict()["rate"] == 0.25


def _edit_ops_full_table(ref, hyp):
    """The full-table edit_ops this project had before (cost table, then a backtrace from the end preferring
    deletion, substitution, insertion, then a hit), kept as the reference the two-row one must agree with."""
    ref_len = len(ref)
    lo = 0
    while lo < len(ref) and lo < len(hyp) and ref[lo] == hyp[lo]:
        lo += 1
    ref, hyp = ref[lo:], hyp[lo:]
    while ref and hyp and ref[-1] == hyp[-1]:
        ref, hyp = ref[:-1], hyp[:-1]
    n, m = len(ref), len(hyp)
    cost = [list(range(m + 1))]
    for i in range(1, n + 1):
        row = [i] + [0] * m
        for j in range(1, m + 1):
            row[j] = min(cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]), cost[i - 1][j] + 1, row[j - 1] + 1)
        cost.append(row)
    subs = dels = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        here = cost[i][j]
        if i > 0 and here == cost[i - 1][j] + 1:
            dels, i = dels + 1, i - 1
        elif i > 0 and j > 0 and ref[i - 1] != hyp[j - 1] and here == cost[i - 1][j - 1] + 1:
            subs, i, j = subs + 1, i - 1, j - 1
        elif j > 0 and here == cost[i][j - 1] + 1:
            ins, j = ins + 1, j - 1
        else:
            i, j = i - 1, j - 1
    return EditCounts(subs, dels, ins, ref_len)


def test_edit_ops_picks_the_same_alignment_as_the_full_table_backtrace():
    rng = random.Random(3)
    for k in range(6000):
        alphabet = ("ab", "abc", "abcdef", "abcdefghijklmnop")[k % 4]  # few symbols: many equal-cost alignments
        ref = [rng.choice(alphabet) for _ in range(rng.randint(0, 16))]
        hyp = [rng.choice(alphabet) for _ in range(rng.randint(0, 16))]
        if k % 3 == 0:  # also strings, and a hypothesis that shares most of the reference
            ref, hyp = "".join(ref), "".join(ref[: rng.randint(0, len(ref))] + hyp[:3] + ref[len(ref) // 2:])
        assert edit_ops(ref, hyp) == _edit_ops_full_table(ref, hyp), (ref, hyp)
    long_ref = "".join(rng.choice("abcd ") for _ in range(300))
    long_hyp = "".join(rng.choice("abcd ") for _ in range(280))
    assert edit_ops(long_ref, long_hyp) == _edit_ops_full_table(long_ref, long_hyp)


def test_the_row_at_a_time_table_picks_the_same_alignment_as_the_cell_by_cell_one():
    rng = random.Random(5)
    for k in range(1500):
        alphabet = ("ab", "abc", "abcdef", "abcdefghijklmnop")[k % 4]
        ref = [rng.choice(alphabet) for _ in range(rng.randint(0, 40))]
        hyp = [rng.choice(alphabet) for _ in range(rng.randint(0, 40))]
        if k % 3 == 0:
            hyp = ref[: rng.randint(0, len(ref))] + hyp[:3] + ref[len(ref) // 2:]
        assert metrics._edit_ops_rows(ref, hyp) == metrics._edit_ops_loop(ref, hyp), (ref, hyp)
    # through edit_ops: a long pair takes the row path and agrees with the full-table backtrace
    ref = [rng.choice("abcde") for _ in range(400)]
    hyp = ref[:100] + [rng.choice("abcde") for _ in range(150)] + ref[250:]
    assert len(hyp) - 100 >= metrics._ROW_VECTOR_MIN
    assert edit_ops(ref, hyp) == _edit_ops_full_table(ref, hyp)


def test_edit_ops_memory_does_not_grow_with_the_product_of_the_lengths():
    # the full table of 3000 x 300 symbols holds 900k cells (over 7 MiB of list slots); two rows hold 600
    rng = random.Random(4)
    ref = [rng.choice("abcdefgh") for _ in range(3000)]
    hyp = [rng.choice("abcdefgh") for _ in range(300)]
    tracemalloc.start()
    try:
        counts = edit_ops(ref, hyp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts.ref_len == 3000 and counts.deletions >= 2700
    assert peak < 1 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_mismatched_lengths_and_units_raise():
    with pytest.raises(XlsrError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
    with pytest.raises(XlsrError, match="unit"):
        error_rate("a", "a", unit="syllable")
