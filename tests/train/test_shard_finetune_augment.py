"""Fine-tuning from a shard folder refuses `augment`, as pretraining does: the shard stream applies no effects, and a
run that silently trained on clean audio would be mistaken for an augmented one."""

import json

import pytest

from xlsr.cli.main import main
from xlsr.config import load_config
from xlsr.errors import XlsrError
from xlsr.train.finetune_config import FinetuneConfig


@pytest.fixture
def shards(tmp_path):
    """A folder shaped like `xlsr data shard` output (index.json + train/): enough to be told from a manifest."""
    root = tmp_path / "SHARDS"
    (root / "train").mkdir(parents=True)
    (root / "index.json").write_text(json.dumps({"format": "xlsr-shards"}))
    return root


@pytest.mark.parametrize("train", ["SHARDS", "SHARDS/train"])
def test_augment_is_refused_when_training_on_shards(shards, train):
    path = str(shards.parent / train)
    with pytest.raises(XlsrError, match=rf"^augment: not available when --train is a shard folder \({path}\)$"):
        load_config(FinetuneConfig, None, {"train": [path], "augment": "default"})
    assert load_config(FinetuneConfig, None, {"train": [path]}).augment == "none"  # no effects asked: trains


def test_augment_with_manifests_is_still_taken(tmp_path):
    manifest = tmp_path / "it" / "train.jsonl"
    assert load_config(FinetuneConfig, None, {"train": [str(manifest)], "augment": "default"}).augment == "default"


def test_finetune_cli_refuses_augment_on_shards_before_writing_the_run(shards, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["finetune", "--init", "none", "--train", str(shards / "train"), "--dev", str(tmp_path / "dev.jsonl"),
                 "--labels", "phones", "--out", str(out), "--max-updates", "1", "--augment", "default"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"xlsr: error: augment: not available when --train is a shard folder ({shards / 'train'})"]
    assert not out.exists()
