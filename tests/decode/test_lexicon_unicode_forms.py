"""Lexicon words (a word LM's word list, usually NFC text) are spelled in the model's tokens whatever Unicode form
the model was trained on: a model of decomposed letters (e and a combining acute) decodes `café` from NFC text."""

import logging
import unicodedata

from decode_fixtures import frames

from xlsr.decode.beam import BeamSearchConfig, BeamSearchDecoder
from xlsr.text.vocab import Vocabulary


def test_nfc_lexicon_words_are_spelled_with_a_decomposed_vocabulary(caplog):
    vocab = Vocabulary.build([unicodedata.normalize("NFD", "café la")], kind="chars")
    assert "é" not in vocab and "\u0301" in vocab
    with caplog.at_level(logging.WARNING, logger="xlsr.decode.beam"):
        decoder = BeamSearchDecoder(vocab, lexicon=["café", "la"], config=BeamSearchConfig())
    assert not [r for r in caplog.records if "cannot be spelled" in r.getMessage()]
    assert decoder.lexicon["café"] == [["c", "a", "f", "e", "\u0301", "|"]]
    logits = frames(vocab, ["c", "a", "f", "e", "\u0301", "|", "l", "a"])
    assert decoder.decode(logits)[0].words == ["café", "la"]
