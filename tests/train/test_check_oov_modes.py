"""Fine-tuning's check of label symbols outside a given vocabulary: error refuses, warn maps them to <unk> with a
warning, unk maps them without one (the counts are returned for data_report.json either way)."""

import dataclasses
import logging

import pytest

from xlsr.data.manifest import Utterance
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.finetune_data import check_oov


def _train():
    return {"m.jsonl": [Utterance("/nowhere/a.wav", 1000, "it", phones="a c", id="u0"),
                        Utterance("/nowhere/b.wav", 1000, "it", phones="b", id="u1")]}


def _check(oov, caplog):
    cfg = dataclasses.replace(FinetuneConfig(labels="phones"), oov=oov)
    with caplog.at_level(logging.INFO, logger="xlsr.train.finetune_data"):
        found = check_oov(cfg, Vocabulary.build(["a b"]), _train(), source="v.json", keep_head=False)
    return found, [r for r in caplog.records if "mapped to <unk>" in r.getMessage()]


def test_warn_warns_and_unk_does_not(caplog):
    found, records = _check("warn", caplog)
    assert found == {"m.jsonl": {"c": 1}}
    assert [r.levelno for r in records] == [logging.WARNING]
    caplog.clear()
    found, records = _check("unk", caplog)
    assert found == {"m.jsonl": {"c": 1}}
    assert [r.levelno for r in records] == [logging.INFO]


def test_error_refuses_naming_the_manifest_and_the_way_out(caplog):
    with pytest.raises(XlsrError, match=r"m\.jsonl: 1 label symbols .*oov=warn"):
        _check("error", caplog)
