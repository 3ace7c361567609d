"""encode_labels' three answers to label symbols outside the vocabulary: error, warn (and map to <unk>), unk."""

import logging

import pytest
from data_fixtures import PhoneVocab

from xlsr.data.label_ids import encode_labels
from xlsr.data.manifest import Utterance
from xlsr.data.utterance_index import as_index
from xlsr.errors import XlsrError


def _utts():
    return as_index([Utterance("/nowhere/a.wav", 1000, "it", phones="a b", id="u0"),
                     Utterance("/nowhere/b.wav", 2000, "it", phones="c a c", id="u1")])


def test_warn_maps_unknown_symbols_to_unk_and_says_so(caplog):
    vocab = PhoneVocab(["a b"])  # <blank> 0, <unk> 1, a 2, b 3: no 'c'
    with caplog.at_level(logging.WARNING, logger="xlsr.data.label_ids"):
        ids = encode_labels(_utts(), vocab, "phones", oov="warn")
    assert [ids[0].tolist(), ids[1].tolist()] == [[2, 3], [1, 2, 1]]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "'c'×2" in warned[0] and "mapped to <unk>" in warned[0]


def test_unk_maps_silently_and_error_refuses(caplog):
    vocab = PhoneVocab(["a b"])
    with caplog.at_level(logging.WARNING, logger="xlsr.data.label_ids"):
        ids = encode_labels(_utts(), vocab, "phones", oov="unk")
    assert ids[1].tolist() == [1, 2, 1] and not caplog.records
    with pytest.raises(XlsrError, match="outside the vocabulary: 'c'×2"):
        encode_labels(_utts(), vocab, "phones", oov="error")
