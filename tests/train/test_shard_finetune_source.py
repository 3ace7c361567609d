"""Fine-tuning from a shard folder (`--train SHARDS` or `SHARDS/<split>`): which split it trains on, and the
vocabulary built from the index's label symbols of that split alone."""

import json

import pytest

from xlsr.data.shards import write_shards
from xlsr.errors import XlsrError
from xlsr.interop.native import load_checkpoint
from xlsr.train.finetune import FinetuneConfig, finetune
from xlsr.train.monitor import read_log
from xlsr.train.shard_finetune import shard_labels, shard_train_source

from ._tones import write_tone_corpus
from .test_finetune import QUIET, SMALL

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """SHARDS with a train split of tones (phones a, i, u) and a dev split whose labels also write `o`."""
    root = tmp_path_factory.mktemp("tones")
    train = write_tone_corpus(root, "train", 12, seed=1)
    dev = write_tone_corpus(root, "dev", 4, seed=2)
    lines = [json.loads(line) for line in dev.read_text().splitlines()]
    for line in lines:
        line["phones"] += " o"
        line["text"] += "o"
    dev.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path_factory.mktemp("shards")
    write_shards(root, out, shard_size=200_000, show_progress=False)
    return out, train, dev


def test_a_shard_folder_trains_on_its_train_split_unless_a_split_folder_is_named(sharded):
    out, train, _ = sharded
    assert shard_train_source([str(out)]) == (out, "train")
    assert shard_train_source([str(out / "dev")]) == (out, "dev")
    assert shard_train_source([str(train)]) is None  # a manifest
    with pytest.raises(XlsrError, match="cannot be mixed"):
        shard_train_source([str(out), str(train)])


@pytest.mark.parametrize("labels, field", [("phones", "phones"), ("chars", "text")])
def test_the_vocabulary_input_is_the_label_symbols_of_the_split_trained_on(sharded, labels, field):
    out, _, _ = sharded
    assert sorted(getattr(u, field) for u in shard_labels(out, "train", labels).utterances) == ["a", "i", "u"]
    assert sorted(getattr(u, field) for u in shard_labels(out, "dev", labels).utterances) == ["a", "i", "o", "u"]


def test_fine_tuning_from_a_shard_folder_trains_on_its_train_split(sharded, tmp_path):
    out, _, dev = sharded
    run = finetune(FinetuneConfig(train=[str(out)], dev=[str(dev)], out=str(tmp_path / "run"), model=SMALL,
                                  max_updates=2, max_tokens=60_000, log_every=1, valid_every=0, freeze_updates=0,
                                  oov="unk", **QUIET))
    assert load_checkpoint(run / "checkpoints" / "last").vocab == ["<blank>", "<unk>", "a", "i", "u"]
    assert [r["update"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"] == [1, 2]
    report = json.loads((run / "data_report.json").read_text())
    assert report["vocab_size"] == 5 and report["oov"] == {str(dev): {"o": 4}}  # dev's `o` outside the vocabulary
