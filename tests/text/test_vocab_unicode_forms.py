"""A vocabulary spells a label typed in another Unicode form (NFC or NFD) with its own tokens, as scoring compares
texts in NFC; a label whose symbols are all tokens is split as written."""

import unicodedata

import pytest

from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary

NFC_TEXT = unicodedata.normalize("NFC", "été tiếng 한")
NFD_TEXT = unicodedata.normalize("NFD", NFC_TEXT)


def test_a_label_in_the_other_unicode_form_gets_the_ids_of_the_same_text():
    composed = Vocabulary.build([NFC_TEXT], kind="chars")
    decomposed = Vocabulary.build([NFD_TEXT], kind="chars")
    assert "é" in composed and "\u0301" not in composed and "é" not in decomposed
    for vocab, own, other in [(composed, NFC_TEXT, NFD_TEXT), (decomposed, NFD_TEXT, NFC_TEXT)]:
        assert vocab.encode(other) == vocab.encode(own)
        assert vocab.oov_report([other]) == {}
        assert vocab.unk_id not in vocab.encode(other, strict=True)
    # ế as ê and a combining acute (as Vietnamese keyboards type it), 한 as its jamo: the fewest tokens
    partly = Vocabulary(["<blank>", "<unk>", "|", "ê", "\u0301", "\u1112", "\u1161", "\u11ab"], kind="chars")
    assert partly.tokenize("ế 한") == ["ê", "\u0301", "|", "\u1112", "\u1161", "\u11ab"]


def test_a_label_whose_symbols_are_all_tokens_is_split_as_written():
    mixed = Vocabulary.build([NFC_TEXT, NFD_TEXT], kind="chars")  # both spellings are tokens
    assert mixed.tokenize("e\u0301") == ["e", "\u0301"] and mixed.tokenize("é") == ["é"]


def test_a_symbol_no_run_of_tokens_writes_stays_outside_the_vocabulary():
    vocab = Vocabulary.build(["cafe"], kind="chars")  # no acute, loose or composed
    assert vocab.oov_report([unicodedata.normalize("NFD", "café")]) == {"é": 1}  # named as one letter, in NFC
    with pytest.raises(XlsrError, match="outside the vocabulary"):
        vocab.encode("caf\u00e9", strict=True)
    assert vocab.encode("e\u0301") == [vocab.unk_id]


def test_a_phone_in_the_other_unicode_form_is_the_same_token():
    nasal = unicodedata.normalize("NFD", "ã")
    phones = Vocabulary(["<blank>", "<unk>", nasal, "t"], kind="phones")
    assert phones.encode("t \u00e3") == phones.encode(f"t {nasal}") == [3, 2]
    assert phones.oov_report(["\u00e3\u0301"]) == {"\u00e3\u0301": 1}  # another phone: no token spells it
