"""Only the part of a label that holds a symbol outside the vocabulary is respelled (in another Unicode form): the
rest keeps the ids of its tokens as written, whatever NFC would make of it; and a symbol is respelled by tokens that
write the same text with their marks in another order, or as a letter NFC keeps decomposed."""

import pytest

from xlsr.decode.evaluate import unspellable
from xlsr.text.vocab import Vocabulary

# Vietnamese as Windows keyboards type it: a precomposed ê and a combining dot below (NFC: ệ, U+1EC7)
VIET = "vi\u00ea\u0323t nam"
# Arabic typed with the shadda before the fatha (NFC puts the fatha, class 30, before the shadda, class 33)
ARABIC = "\u0628\u0651\u064e\u0643"
# Hindi with the precomposed letter ड़ (U+095C), which NFC writes as ड and a nukta (a composition exclusion)
HINDI = "\u095c\u0940"


@pytest.mark.parametrize("text", [VIET, ARABIC, HINDI], ids=["vietnamese", "arabic", "hindi"])
def test_a_symbol_outside_the_vocabulary_leaves_the_tokens_around_it_as_written(text):
    vocab = Vocabulary.build([text], kind="chars")
    assert "5" not in vocab
    own = vocab.encode(text)
    assert vocab.unk_id not in own
    assert vocab.encode(f"{text} 5") == [*own, vocab.word_boundary_id, vocab.unk_id]
    assert vocab.oov_report([f"{text} 5"]) == {"5": 1}


def test_a_letter_written_with_its_marks_in_another_order_is_spelled_by_the_tokens():
    vocab = Vocabulary.build([VIET], kind="chars")  # ê and a dot below; no ệ, no loose circumflex
    assert vocab.tokenize("vi\u1ec7t") == ["v", "i", "\u00ea", "\u0323", "t"]
    assert vocab.oov_report(["vi\u1ec7t"]) == {}
    assert unspellable(vocab, ["vi\u1ec7t nam"]) == {}  # the model writes ê and the dot, scored as ệ


def test_a_letter_nfc_keeps_decomposed_is_the_precomposed_token():
    vocab = Vocabulary.build([HINDI], kind="chars")  # ड़ as one code point; no ड, no nukta
    assert vocab.tokenize("\u0921\u093c\u0940") == ["\u095c", "\u0940"]
    assert unspellable(vocab, ["\u0921\u093c\u0940"]) == {}
