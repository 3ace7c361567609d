"""Dev labels typed in another Unicode form than the training labels (NFD é beside a vocabulary of composed
letters) are scored as the same text, as `xlsr evaluate` scores them: no symbol outside the vocabulary, and the
ids the dev loader trains the CTC loss and the dev CER on are those of the NFC label."""

import json
import logging
import unicodedata

from xlsr.data.label_ids import encode_labels
from xlsr.interop.init_model import InitModel
from xlsr.model import Wav2Vec2Config
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.finetune_data import read_finetune_data

from ._tones import write_tone_corpus

TEXTS = ["été là", "où ça", "déjà vu"]  # NFC


def _with_texts(manifest, form):
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    for row, text in zip(rows, TEXTS):
        row["text"] = unicodedata.normalize(form, text)
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return manifest


def test_nfd_dev_labels_get_the_ids_of_their_nfc_spelling(tmp_path, caplog):
    train = _with_texts(write_tone_corpus(tmp_path, "train", 3, seed=1, lang="fr"), "NFC")
    dev = _with_texts(write_tone_corpus(tmp_path, "dev", 3, seed=2, lang="fr"), "NFD")
    config = Wav2Vec2Config.preset("tiny")
    with caplog.at_level(logging.WARNING, logger="xlsr.train.finetune_data"):
        data = read_finetune_data(FinetuneConfig(train=[str(train)], dev=[str(dev)], labels="chars"),
                                  InitModel(config), config)
    assert data.oov == {}
    assert not [r for r in caplog.records if "dev label symbols" in r.getMessage()]
    ids = encode_labels(data.dev_utts["fr"], data.vocab, "chars", oov="unk")
    assert [list(ids[i]) for i in range(len(TEXTS))] == [data.vocab.encode(t) for t in TEXTS]
