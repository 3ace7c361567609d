"""`xlsr data stats SHARDS` reads the shard folder's index (utterances, hours and shards per language and split, the
α table of its train split); `xlsr data check --data SHARDS` reads its shards (the check itself:
tests/data/test_check_shard_folder.py) and refuses in one line what applies to manifests only."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli.main import main
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shards import write_shards


@pytest.fixture
def shards(tmp_path):
    """es: 3 train utterances of 1.8 s and 1 dev of 0.9 s; it: 1 train utterance of 3.6 s."""
    for lang, split, seconds in (("es", "train", [1.8] * 3), ("es", "dev", [0.9]), ("it", "train", [3.6])):
        utts = []
        for i, s in enumerate(seconds):
            path = tmp_path / "corpus" / lang / f"{split}{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * np.sin(np.arange(int(s * 16000)) * 0.05), 16000)
            utts.append(Utterance(str(path), int(s * 16000), lang, id=f"{lang}{split}{i}"))
        write_manifest(tmp_path / "corpus" / lang / f"{split}.jsonl", utts)
    write_shards(tmp_path / "corpus", tmp_path / "shards", shard_size=150_000, show_progress=False)
    return tmp_path / "shards"


def test_stats_of_a_shard_folder_come_from_its_index(shards, capsys):
    assert main(["data", "stats", str(shards), "--alpha", "1"]) == 0
    out = capsys.readouterr().out
    table, alpha = out.split("\n\n")
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in table.splitlines()[1:]}
    assert rows[("es", "dev")] == ["1", "0.000", "1"]
    assert rows[("es", "train")][:2] == ["3", "0.002"] and rows[("it", "train")][:2] == ["1", "0.001"]
    assert rows[("total", "5")][0] == "0.003"  # 5 utterances, 9.9 s
    p = {line.split()[0]: line.split()[3] for line in alpha.strip().splitlines()[1:]}
    assert p == {"es": "60.0%", "it": "40.0%"}  # 5.4 s and 3.6 s of train audio at α = 1


@pytest.mark.parametrize("where, splits, read", [("", [], {"es dev", "es train", "it train"}),
                                                  ("", ["--splits", "train"], {"es train", "it train"}),
                                                  ("train", [], {"es train", "it train"})])
def test_data_check_of_a_shard_folder_reads_its_shards(shards, tmp_path, capsys, where, splits, read):
    folder = shards / where if where else shards
    assert main(["data", "check", "--data", str(folder), *splits, "--out", str(tmp_path / "bad.jsonl"),
                 "--no-progress", "--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heads = [line.split(": ")[0].rsplit(" ", 1) for line in lines[:-1]]  # "SHARDS/<split> <lang>"
    assert {f"{lang} {Path(folder).name}" for folder, lang in heads} == read
    assert lines[-1].startswith(f"read {len(read)} of {len(read)} shard(s) of {shards} (")
    assert (tmp_path / "bad.jsonl").read_text() == ""


@pytest.mark.parametrize("extra, words", [
    (["--manifest", "m.jsonl"], "--manifest: check manifests and the shard folder {folder} in two runs"),
    (["--write-clean", "clean"], "--write-clean: a shard folder is not copied without its bad utterances"),
    (["--splits", "dev"], "--splits: {folder} is the shard split 'train'; give the shard folder {shards} to choose"),
])
def test_data_check_of_a_shard_folder_refuses_what_does_not_apply(shards, tmp_path, capsys, extra, words):
    folder = shards / "train"
    assert main(["data", "check", "--data", str(folder), *extra, "--out", str(tmp_path / "bad.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xlsr: error: " + words.format(folder=folder, shards=shards)) and "\n" not in err


def test_stats_of_a_split_folder_of_shards_are_its_split_s(shards, capsys):
    assert main(["data", "stats", str(shards / "train")]) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["es", "train"], ["it", "train"], ["total", "4"]]


def test_stats_check_the_tars_against_the_index(shards, capsys, caplog):
    tar = next((shards / "train").glob("es-*.tar"))
    tar.write_bytes(tar.read_bytes()[:-2048])  # cut: the stats are printed, with a warning naming it
    assert main(["data", "stats", str(shards)]) == 0
    assert any(str(tar) in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records)
    tar.unlink()  # gone: one line naming it, no table
    capsys.readouterr()
    assert main(["data", "stats", str(shards)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().startswith("xlsr: error: ") and f"lists train/{tar.name}, which does not exist" in err


def test_data_check_of_a_damaged_shard_folder_exits_1_with_the_findings(shards, tmp_path, capsys):
    tar = shards / "train" / "it-000000.tar"
    tar.write_bytes(tar.read_bytes()[:3000])  # cut inside its only utterance
    assert main(["data", "check", "--data", str(shards), "--out", str(tmp_path / "bad.jsonl"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"{shards / 'train'} it: 1 shard(s), 0 utterances, 0.000 h read; 1 utterance(s) bad or lost (1 damaged)" in out
    (finding,) = [json.loads(line) for line in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert finding["shard"] == "train/it-000000.tar" and finding["kind"] == "damaged" and finding["count"] == 1
