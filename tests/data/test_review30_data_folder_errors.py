"""--data given a manifest file or one language's folder instead of the corpus folder (DIR/<lang>/<split>.jsonl):
one line saying what was given and what is wanted, not "no such data folder" for a file that exists."""

import json

import pytest

from xlsr.cli.main import main
from xlsr.data.manifest import find_manifests
from xlsr.errors import ManifestError


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "data" / "sw").mkdir(parents=True)
    line = {"audio": "/nowhere/a.wav", "num_samples": 48000, "lang": "sw"}
    (tmp_path / "data" / "sw" / "train.jsonl").write_text(json.dumps(line) + "\n")
    return tmp_path / "data"


def test_a_manifest_file_is_not_called_missing(corpus):
    with pytest.raises(ManifestError) as exc:
        find_manifests(corpus / "sw" / "train.jsonl", "train")
    assert str(exc.value) == (f"{corpus / 'sw' / 'train.jsonl'}: a file, not a data folder: give the folder that "
                              "holds <lang>/train.jsonl")


def test_a_language_folder_is_named_as_one(corpus):
    with pytest.raises(ManifestError) as exc:
        find_manifests(corpus / "sw", "train")
    assert str(exc.value) == (f"{corpus / 'sw'}: no manifests <lang>/train.jsonl found (train.jsonl is in it: it is "
                              "one language's folder; give the folder that holds it)")
    assert find_manifests(corpus, "train") == {"sw": corpus / "sw" / "train.jsonl"}


def test_pretrain_on_a_language_folder_is_one_line(corpus, capsys):
    run = corpus.parent / "run"
    rc = main(["pretrain", "--data", str(corpus / "sw"), "--out", str(run), "--max-updates", "1", "--num-workers", "0",
               "--device", "cpu", "--progress", "false", "--tensorboard", "false"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"xlsr: error: {corpus / 'sw'}: no manifests <lang>/train.jsonl found (train.jsonl is in it: "
                       "it is one language's folder; give the folder that holds it)")


def test_stats_of_a_manifest_file_is_one_line(corpus, capsys):
    assert main(["data", "stats", str(corpus / "sw" / "train.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == (f"xlsr: error: {corpus / 'sw' / 'train.jsonl'}: a file, not a data "
                                               "folder: give the folder that holds <lang>/<split>.jsonl (or a shard "
                                               "folder)")
