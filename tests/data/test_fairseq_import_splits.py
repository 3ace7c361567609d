"""fairseq's validation manifest (valid.tsv) is imported as our `dev` split, the one training validates on;
`--split` puts every tsv's entries in the split it names."""

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli.main import main
from xlsr.data.importers import import_fairseq, split_name
from xlsr.data.manifest import read_manifest


@pytest.fixture
def tsvs(tmp_path):
    """train.tsv, valid.tsv and validation.tsv, one file each (u0, u1, u2), as fairseq's wav2vec_manifest.py writes."""
    audio = tmp_path / "wavs"
    audio.mkdir()
    paths = []
    for i, name in enumerate(("train", "valid", "validation")):
        sf.write(audio / f"u{i}.wav", np.zeros(1600 * (i + 1), dtype=np.float32), 16000)
        paths.append(tmp_path / f"{name}.tsv")
        paths[-1].write_text(f"{audio}\nu{i}.wav\t{1600 * (i + 1)}\n")
    return paths


def _ids(path):
    return [u.id for u in read_manifest(path)]


def test_split_names_of_validation_sets_become_dev_and_others_stay():
    assert [split_name(n) for n in ("valid", "validation", "Valid", "train", "dev", "test", "dev-other")] == \
        ["dev", "dev", "dev", "train", "dev", "test", "dev-other"]


def test_fairseq_valid_and_validation_tsvs_are_imported_as_dev(tsvs, tmp_path):
    summary = import_fairseq(tsvs, tmp_path / "out", lang="en")
    assert summary.counts == {("en", "train"): 1, ("en", "dev"): 2}
    assert sorted(p.name for p in (tmp_path / "out" / "en").glob("*.jsonl")) == ["dev.jsonl", "train.jsonl"]
    assert _ids(tmp_path / "out" / "en" / "dev.jsonl") == ["u1", "u2"]


def test_fairseq_split_puts_every_tsv_in_that_split(tsvs, tmp_path):
    summary = import_fairseq(tsvs[1], tmp_path / "out", lang="en", split="test")
    assert summary.counts == {("en", "test"): 1}
    assert _ids(tmp_path / "out" / "en" / "test.jsonl") == ["u1"]


def test_cli_fairseq_import_writes_dev_and_takes_split(tsvs, tmp_path, capsys):
    train, valid, _ = tsvs
    assert main(["data", "import", "fairseq", str(train), str(valid), "--lang", "en", "--out", str(tmp_path / "a")]) == 0
    assert "en/dev 1 (0.2 s), en/train 1 (0.1 s)" in capsys.readouterr().out
    assert _ids(tmp_path / "a" / "en" / "dev.jsonl") == ["u1"]
    assert main(["data", "import", "fairseq", str(train), str(valid), "--lang", "en", "--split", "train",
                 "--out", str(tmp_path / "b")]) == 0
    assert "en/train 2 (0.3 s)" in capsys.readouterr().out
    assert _ids(tmp_path / "b" / "en" / "train.jsonl") == ["u0", "u1"]
    assert main(["data", "import", "fairseq", str(valid), "--lang", "en", "--split", "../x",
                 "--out", str(tmp_path / "c")]) == 2  # a split names a file: a plain name, checked first
    assert "split" in capsys.readouterr().err and not (tmp_path / "c").exists()
