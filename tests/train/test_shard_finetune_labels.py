"""Fine-tuning from shards judges the labels it does not read as a manifest run judges them: the NFC/NFD sign of a
character vocabulary by the characters NFC respells in the labels, and symbols outside a given vocabulary by how
often they occur (both from the shard index); an index written before xlsr recorded either still loads."""

import json
import logging
import unicodedata

from xlsr.data.shard_index import INDEX_NAME
from xlsr.interop.init_model import InitModel
from xlsr.model import Wav2Vec2Config
from xlsr.text.vocab import Vocabulary
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.finetune_data import read_finetune_data

from ._audio import text_shard_corpus

YORUBA = [unicodedata.normalize("NFC", t) for t in ("ọ\u0301mọ dé ilé ẹ\u0301", "ọja\u0300")]  # NFC: ọ́, ẹ́ keep a loose acute beside é
NFD = "ile\u0301"  # one label typed decomposed: two spellings of é


def _read(train, caplog, **kw):
    """(FinetuneData, the log's messages) of reading `train` for a character model."""
    config = Wav2Vec2Config.preset("tiny")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xlsr.train.finetune_data"):
        data = read_finetune_data(FinetuneConfig(train=[str(train)], labels="chars", **kw), InitModel(config), config)
    return data, [r.getMessage() for r in caplog.records]


def _nfd_signs(messages):
    return [m for m in messages if "transcripts mixing NFC and NFD spellings" in m]


def _old_index(shards):
    """Strip the index of what xlsr did not record before: symbol counts and NFC respellings."""
    index = json.loads((shards / INDEX_NAME).read_text(encoding="utf-8"))
    for entry in index["shards"]:
        del entry["symbol_counts"], entry["nfc_respelled"]
    (shards / INDEX_NAME).write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")


def test_nfc_yoruba_shards_are_no_sign_of_nfd_spellings_and_one_nfd_label_is(tmp_path, caplog):
    for name, texts, signs in [("nfc", YORUBA, 0), ("mixed", [*YORUBA, NFD], 1)]:
        manifest, shards = text_shard_corpus(tmp_path / name, "yo", texts)
        assert len(_nfd_signs(_read(manifest, caplog)[1])) == signs  # the manifest run: the reference
        assert len(_nfd_signs(_read(shards, caplog)[1])) == signs, name


def test_symbols_outside_the_vocabulary_are_counted_in_the_shards_as_in_the_manifest(tmp_path, caplog):
    manifest, shards = text_shard_corpus(tmp_path, "yo", [*YORUBA, "\u1ecd\u0300\u1ecd\u0300 \u1eb9"])  # NFC ọ̀: a loose grave
    vocab = tmp_path / "vocab.json"
    Vocabulary(["<blank>", "<unk>", "|", "d", "l", "m", "i", "é"], kind="chars").to_json(vocab)
    want = {"ọ": 5, "\u0301": 2, "j": 1, "à": 1, "\u0300": 2, "ẹ": 2}
    by_manifest, said = _read(manifest, caplog, vocab=str(vocab), oov="warn")
    by_shards, told = _read(shards, caplog, vocab=str(vocab), oov="warn")
    assert by_manifest.oov == {str(manifest): want} and by_shards.oov == {str(shards): want}
    assert by_shards.report()["oov_uncounted"] == []
    assert any(m.startswith(f"{manifest}: 13 label symbols are not in the vocabulary") for m in said)
    assert any(m.startswith(f"{shards}: 13 label symbols are not in the vocabulary") for m in told)


def test_an_index_without_counts_or_respellings_still_loads_and_says_its_counts_are_unknown(tmp_path, caplog):
    _, shards = text_shard_corpus(tmp_path, "yo", YORUBA)
    _old_index(shards)
    vocab = tmp_path / "vocab.json"
    Vocabulary(["<blank>", "<unk>", "|", "d", "l", "m", "i", "é", "\u0301", "ọ", "ẹ", "à"], kind="chars").to_json(vocab)
    data, messages = _read(shards, caplog, vocab=str(vocab), oov="warn")
    assert data.oov == {str(shards): {"j": 1}} and data.report()["oov_uncounted"] == [str(shards)]
    assert any(m.startswith(f"{shards}: 1 distinct label symbols are not in the vocabulary") and
               "how often each occurs is unknown" in m for m in messages)
    assert len(_nfd_signs(messages)) == 1  # the vocabulary alone decides, as before the index recorded respellings
    assert any(m.startswith(f"{shards}: its index was written before xlsr recorded what NFC respells") for m in messages)
