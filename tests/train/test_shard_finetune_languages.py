"""Fine-tuning from shards learns the languages it trains on from the one read of the shard index that gives its labels
(`ShardLabels.languages`): the dev-language check warns and reports as it does for manifests, without a second read."""

import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shard_index import INDEX_NAME
from xlsr.data.shards import write_shards
from xlsr.interop.init_model import InitModel
from xlsr.model import Wav2Vec2Config
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.finetune_data import read_finetune_data
from xlsr.train.shard_finetune import shard_labels


def _split(root: Path, split: str, langs: list[str]) -> Path:
    """ROOT/<lang>/<split>.jsonl for each of `langs`: two seconds of quiet audio labelled 'aba'; the first manifest."""
    manifests = []
    for lang in langs:
        audio = root / lang / f"{split}.wav"
        audio.parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio, np.full(32000, 0.01, dtype=np.float32), 16000)
        manifests.append(root / lang / f"{split}.jsonl")
        write_manifest(manifests[-1], [Utterance(str(audio), 32000, lang, text="aba", id=f"{lang}-{split}")])
    return manifests[0]


def test_the_languages_trained_on_come_from_the_one_read_of_the_index(tmp_path, monkeypatch, caplog):
    _split(tmp_path / "data", "train", ["aa", "bb"])
    write_shards(tmp_path / "data", tmp_path / "shards", splits=("train",), show_progress=False)
    dev = _split(tmp_path / "dev", "dev", ["bb"])
    dev_cc = _split(tmp_path / "dev_cc", "dev", ["cc"])  # cc validated, not trained; aa trained, not validated
    shards = tmp_path / "shards"

    reads = []
    read_text = Path.read_text

    def counted(self, *args, **kwargs):
        if self.name == INDEX_NAME:
            reads.append(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    config = Wav2Vec2Config.preset("tiny")
    cfg = FinetuneConfig(train=[str(shards)], dev=[str(dev), str(dev_cc)], labels="chars")
    with caplog.at_level(logging.WARNING, logger="xlsr.train.finetune_data"):
        data = read_finetune_data(cfg, InitModel(config), config)
    assert reads == [shards / INDEX_NAME]
    assert data.unmatched_languages == {"trained_not_validated": ["aa"], "validated_not_trained": ["cc"]}
    assert data.report()["dev_languages"] == data.unmatched_languages
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("dev: no dev utterance of training language(s) 'aa'") for m in messages)
    assert any(m.startswith("dev: language(s) 'cc' have dev utterances but no training utterance") for m in messages)
    assert shard_labels(shards, "train", "chars").languages == {"aa", "bb"}
