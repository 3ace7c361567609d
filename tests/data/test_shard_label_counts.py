"""The shard index records, per shard, how often each label symbol occurs and which characters NFC respells in the
texts; an entry without them (an index written before) reads as unknown, and malformed ones are refused in one
line."""

import json

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shard_index import INDEX_NAME, ShardInfo, read_index
from xlsr.data.shards import write_shards
from xlsr.errors import XlsrError
from xlsr.text.normalize import nfc_respelled, unnormalized_signs


def test_nfc_respelled_names_what_nfc_composes_and_decomposes():
    assert nfc_respelled("café") == set()
    assert nfc_respelled("cafe\u0301 e") == {"e", "\u0301", "é"}  # the loose acute, the e it joins, the é made
    assert nfc_respelled("\u0958") == {"\u0958", "\u0915", "\u093c"}  # क़: NFC decomposes it
    nfc_yoruba = "\u1ecd\u0301 \u00e9"  # ọ́ (ọ and a loose acute: NFC) beside é
    assert unnormalized_signs(["\u1ecd", "\u0301", "\u00e9"], respelled=set()) is None
    assert "mixing NFC and NFD" in unnormalized_signs(["\u1ecd", "\u0301", "\u00e9"], respelled=nfc_respelled("e\u0301"))
    assert unnormalized_signs(["\u1ecd", "\u0301", "\u00e9"], [nfc_yoruba]) is None


@pytest.fixture
def shards(tmp_path):
    """Two shards of one utterance each: an NFC label and one with an NFD é; phones on both."""
    (tmp_path / "fr").mkdir()
    utts = []
    for k, (text, phones) in enumerate([("ab a", "a b a"), ("cafe\u0301", "k a f e")]):
        sf.write(tmp_path / "fr" / f"u{k}.wav", np.full(8000, 0.01, dtype=np.float32), 16000)
        utts.append(Utterance(str(tmp_path / "fr" / f"u{k}.wav"), 8000, "fr", text=text, phones=phones, id=f"u{k}"))
    write_manifest(tmp_path / "fr" / "train.jsonl", utts)
    write_shards(tmp_path, tmp_path / "shards", shard_size=1, splits=("train",), show_progress=False)
    return tmp_path / "shards"


def test_each_shard_lists_its_symbol_counts_and_nfc_respellings(shards):
    first, second = read_index(shards).shards
    assert first.symbol_counts == {"phones": {"a": 2, "b": 1}, "chars": {"a": 2, "b": 1, "|": 1}}
    assert second.symbol_counts == {"phones": {"a": 1, "e": 1, "f": 1, "k": 1},
                                    "chars": {"a": 1, "c": 1, "e": 1, "f": 1, "\u0301": 1}}
    assert (first.nfc_respelled, second.nfc_respelled) == ([], sorted({"e", "\u0301", "é"}))


def test_an_entry_written_before_the_counts_reads_them_as_unknown_and_writes_none(shards):
    entry = json.loads((shards / INDEX_NAME).read_text(encoding="utf-8"))["shards"][0]
    del entry["symbol_counts"], entry["nfc_respelled"]
    info = ShardInfo.from_dict(entry, "index.json: shards[0]")
    assert (info.symbol_counts, info.nfc_respelled) == (None, None)
    assert "symbol_counts" not in info.to_dict() and "nfc_respelled" not in info.to_dict()


@pytest.mark.parametrize("key, value, message", [
    ("symbol_counts", {"chars": {"a": 2}}, "symbol_counts must give each kind's symbols"),  # phones missing
    ("symbol_counts", {"phones": {"a": 2, "b": 1}, "chars": {"a": 2, "b": 0, "|": 1}}, "a positive count"),
    ("nfc_respelled", "e\u0301", "nfc_respelled must be a list of characters"),
])
def test_a_malformed_entry_is_refused_in_one_line(shards, key, value, message):
    entry = json.loads((shards / INDEX_NAME).read_text(encoding="utf-8"))["shards"][0]
    entry[key] = value
    with pytest.raises(XlsrError, match=rf"^index\.json: shards\[0\]: .*{message}") as raised:
        ShardInfo.from_dict(entry, "index.json: shards[0]")
    assert "\n" not in str(raised.value)
