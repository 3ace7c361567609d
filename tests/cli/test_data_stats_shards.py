"""`xlsr data stats SHARDS` reads the shard folder's index (utterances, hours and shards per language and split, the
α table of its train split); `xlsr data check --data SHARDS` says in one line what to check instead."""

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


@pytest.mark.parametrize("where, splits", [("", []), ("", ["--splits", "train"]), ("train", [])])
def test_data_check_of_a_shard_folder_says_what_to_check(shards, tmp_path, capsys, where, splits):
    folder = shards / where if where else shards
    assert main(["data", "check", "--data", str(folder), *splits, "--out", str(tmp_path / "bad.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"xlsr: error: {folder}: a shard folder, not manifests: check the corpus it was sharded from "
                   f"(xlsr data check --data SOURCE); a shard is checked against its sha256 and each of its "
                   f"utterances decoded as training reads it (docs/shards.md)")


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
