"""Transcripts in many scripts: Unicode spellings (NFC, NFD), casing, spaces and punctuation through normalisation,
the vocabulary's signs of raw text, and error rates checked against a plain edit distance."""

import random
import unicodedata

import pytest

from xlsr.text.metrics import cer, corpus_counts, per, utterance_counts, wer
from xlsr.text.normalize import normalize_text, unnormalized_signs
from xlsr.text.vocab import Vocabulary


def nfc(text):
    return unicodedata.normalize("NFC", text)


def nfd(text):
    return unicodedata.normalize("NFD", text)


# the same words, each typed two ways that Unicode calls the same text
SPELLINGS = {
    "vi": ("Tiếng Việt", None),  # ế: e, circumflex, acute
    "ko": ("한국어 말", None),  # syllables or conjoining jamo
    "hi": ("\u0958\u093f\u0932\u093e", "\u0915\u093c\u093f\u0932\u093e"),  # क़िला: क़ one code point, or क and nukta
    "ar": ("\u0645\u064f\u062f\u064e\u0631\u0651\u0650\u0633", "\u0645\u064f\u062f\u064e\u0631\u0650\u0651\u0633"),
    # مُدَرِّس with shadda then kasra, and kasra then shadda
    "bn": ("বোন আয়", None),  # ো and য় precomposed, or in their parts
}


@pytest.mark.parametrize("lang", sorted(SPELLINGS))
def test_nfc_and_nfd_spellings_score_as_the_same_text(lang):
    one, other = SPELLINGS[lang]
    one, other = (one, other) if other else (nfc(one), nfd(one))
    assert one != other
    assert cer(one, other) == 0.0 and wer(one, other) == 0.0 and cer(other, one) == 0.0
    # a character is a code point of the NFC form, whichever spelling the reference has
    assert utterance_counts(other, one, "char").ref_len == len(nfc(one).replace(" ", ""))
    assert per(f"t {nfd('ã')} | n", f"t {nfc('ã')} | n") == 0.0  # IPA phones with a diacritic


def test_a_character_is_a_code_point_not_a_grapheme():
    # कि is one grapheme cluster, two code points (ka, vowel sign i): as jiwer and the fairseq/HF recipes count
    assert utterance_counts("कि", "का", "char") == utterance_counts("ab", "ac", "char")
    assert utterance_counts("कि", "क", "char").deletions == 1


def _distance(ref, hyp):
    """Levenshtein distance of two sequences, the textbook table."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def test_error_rates_are_pooled_edit_distances_over_nfc_code_points_and_words():
    rng = random.Random(0)
    letters = ["a", "e", "é", "e\u0301", "ế", "한", nfd("한"), "क", "ि", "你", "好"]
    refs, hyps = [], []
    for _ in range(200):
        refs.append(" ".join("".join(rng.choice(letters) for _ in range(rng.randint(1, 4)))
                             for _ in range(rng.randint(0, 5))))
        hyps.append(" ".join("".join(rng.choice(letters) for _ in range(rng.randint(1, 4)))
                             for _ in range(rng.randint(0, 5))))
    chars = [(list(nfc(r).replace(" ", "")), list(nfc(h).replace(" ", ""))) for r, h in zip(refs, hyps)]
    words = [(nfc(r).split(), nfc(h).split()) for r, h in zip(refs, hyps)]
    for (r, h), ref, hyp in zip(chars, refs, hyps):
        counts = utterance_counts(ref, hyp, "char")
        assert (counts.errors, counts.ref_len) == (_distance(r, h), len(r))
    # corpus level: total edits over total reference units (as fairseq, jiwer and sclite), not a mean of rates
    for unit, pairs, rate in (("char", chars, cer), ("word", words, wer)):
        pooled = sum(_distance(r, h) for r, h in pairs) / sum(len(r) for r, _ in pairs)
        assert rate(refs, hyps) == pytest.approx(pooled)
        assert corpus_counts(refs, hyps, unit).errors == sum(_distance(r, h) for r, h in pairs)
    # the two differ: one long utterance right, one short one wrong
    assert wer(["a b c d e f g h", "x"], ["a b c d e f g h", "y"]) == pytest.approx(1 / 9)  # a mean would be 1/2


@pytest.mark.parametrize("raw, want", [
    ("İstanbul'da İzmir", "istanbul'da izmir"),  # İ is i, as the lower-case transcripts spell it
    ("I\u0307stanbul", "istanbul"),  # İ typed as I and a combining dot
    ("STRAẞE Straße", "straße straße"),
    ("ΟΔΟΣ ΟΔΟΣ. ΟΔΟΣ.ΑΝ Σ", "οδος οδος οδος αν σ"),  # Σ ends a word as ς, a full stop after it or not
    ("e\u200b\u0301 e\u00ad\u0301", "é é"),  # an invisible character between a letter and its accent: NFC after
    ("a\u00a0b\tc\u3000d\u2028e", "a b c d e"),  # no-break, ideographic and line separator spaces
    ("नमस्ते। क्या?", "नमस्ते क्या"),  # danda
    ("قال، نعم؟", "قال نعم"),  # Arabic comma and question mark
    ("你好，世界。", "你好 世界"),  # CJK punctuation
    ("l'homme don't well-known", "l'homme don't well known"),
])
def test_normalize_text_across_scripts(raw, want):
    assert normalize_text(raw) == want
    assert normalize_text(want) == want


def test_normalize_text_is_nfc_and_idempotent_on_mixed_scripts():
    rng = random.Random(1)
    pool = list("aeiIİıΣΟσς'’`-., !?ếệ한ক়োাে") + ["\u0301", "\u0302", "\u0323", "\u0307", "\u200b", "\u00ad",
                                                  "\u200c", "\u200d", "\u200f", "\u00a0", nfd("한"), "\u064e\u0651"]
    for _ in range(3000):
        text = normalize_text("".join(rng.choice(pool) for _ in range(rng.randint(0, 10))))
        assert unicodedata.is_normalized("NFC", text) and normalize_text(text) == text, repr(text)


@pytest.mark.parametrize("one, other", [
    (nfc("tiếng việt"), nfd("tiếng việt")),  # ế, ệ: two marks each, and no ê or é of their own in the vocabulary
    (nfc("한국어"), nfd("한국어")),  # syllables and jamo
    ("আ\u09df", "আ\u09af\u09bc"),  # Bengali য় as its own code point (not NFC), and য with a nukta
])
def test_a_vocabulary_of_one_script_spelled_two_ways_is_a_sign(one, other):
    mixed = Vocabulary.build([one, other], "chars")
    assert "mixing NFC and NFD" in (unnormalized_signs(mixed.tokens) or "")
    for one_way in (one, other):
        assert unnormalized_signs(Vocabulary.build([one_way], "chars").tokens) is None


def test_a_vocabulary_of_vowel_signs_in_their_own_right_is_no_sign():
    # NFC Bengali and Tamil hold ো and ொ precomposed and their parts as vowel signs of other syllables
    for words in ("বোন কে কা", "கொடு கெ கா"):
        assert unnormalized_signs(Vocabulary.build([nfc(words)], "chars").tokens) is None


def test_invisible_characters_and_a_dotted_capital_i_in_a_vocabulary_are_signs():
    raw = Vocabulary.build(["hi\u200bthere \ufeffok \u200fshalom", "\u0645\u06cc\u200c\u062e"], "chars")
    assert unnormalized_signs(raw.tokens) == "3 invisible format character(s) (U+200B U+200F U+FEFF)"  # ZWNJ spells
    assert unnormalized_signs(Vocabulary.build(["İstanbul istanbul"], "chars").tokens) == (
        "1 capital(s) beside their lower-case letters (İ)")
