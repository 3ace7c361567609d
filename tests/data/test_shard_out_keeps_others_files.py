"""`xlsr data shard` writes, replaces and removes only what it wrote: --out may not be the corpus it reads (its
index.json would hide the manifests), an index.json that is not an xlsr shard index is refused, not replaced, and a
tar no earlier run into the folder wrote is refused, not deleted; bad --data and --splits are one line each."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli.main import main
from xlsr.data.manifest import Utterance, find_manifests, write_manifest
from xlsr.data.shard_index import read_index
from xlsr.data.shards import write_shards
from xlsr.errors import XlsrError

SHARD_SIZE = 50_000  # bytes: 20 clips of 0.2 s in 4 shards; 4 * SHARD_SIZE holds them all


def _corpus(root: Path, n: int = 20) -> Path:
    """DIR/en/train.jsonl of n noise clips of 0.2 s; DIR is root/data."""
    rng = np.random.default_rng(0)
    utts = []
    for i in range(n):
        path = root / "wav" / f"u{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(3200)).astype(np.float32), 16000)
        utts.append(Utterance(str(path), 3200, "en", text="a", id=f"u{i:02d}"))
    write_manifest(root / "data" / "en" / "train.jsonl", utts)
    return root / "data"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_that_would_hide_the_corpus_is_refused_before_anything_is_written(tmp_path, capsys):
    data = _corpus(tmp_path)
    before = _files(tmp_path)
    capsys.readouterr()
    assert main(["data", "shard", "--data", str(data), "--out", str(data), "--splits", "train"]) == 2
    assert capsys.readouterr().err.strip() == (f"xlsr: error: --out {data}: is the data folder itself; its index.json "
                                               f"would hide the manifests from every reader; give another folder")
    # the folder above it: DIR would read as its shard split 'data'
    with pytest.raises(XlsrError, match=rf"--out {tmp_path}: holds the data folder {data}, which would then read as "
                                        r"its shard split 'data'"):
        write_shards(data, tmp_path, splits=["train"], show_progress=False)
    assert _files(tmp_path) == before
    assert list(find_manifests(data, "train")) == ["en"]

    # a folder inside the corpus hides nothing: the corpus still reads as manifests
    write_shards(data, data / "shards", shard_size=SHARD_SIZE, splits=["train"], show_progress=False)
    assert list(find_manifests(data, "train")) == ["en"] and len(read_index(data / "shards").shards) == 4


def test_an_index_json_xlsr_did_not_write_is_refused_and_kept(tmp_path):
    data, out = _corpus(tmp_path), tmp_path / "so"
    out.mkdir()
    for text in ("mine\n", '{"format": "another-tool", "shards": []}\n'):
        (out / "index.json").write_text(text)
        with pytest.raises(XlsrError, match=r"so/index.json: not an xlsr shard index \((not JSON|format is not)") as exc:
            write_shards(data, out, shard_size=SHARD_SIZE, splits=["train"], show_progress=False)
        assert "\n" not in str(exc.value) and _files(out) == {"index.json": text.encode()}


@pytest.mark.parametrize("index", ["none", "xlsr's"])
def test_a_tar_no_earlier_run_wrote_is_refused_and_kept(tmp_path, index):
    data, out = _corpus(tmp_path), tmp_path / "so"
    if index == "xlsr's":  # an earlier run's folder, to which a tar was added by hand
        write_shards(data, out, shard_size=SHARD_SIZE, splits=["train"], show_progress=False)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "train" / "en-000005.tar").write_text("mine\n")
    before = _files(out)
    with pytest.raises(XlsrError, match=r"so/train/en-000005.tar: a tar no earlier `xlsr data shard` run into .*so "
                                        r"wrote \(its index does not name it\)") as exc:
        write_shards(data, out, shard_size=2 * SHARD_SIZE, splits=["train"], show_progress=False)
    assert "\n" not in str(exc.value) and _files(out) == before


def test_tars_only_a_malformed_entry_named_are_still_this_writers_to_remove(tmp_path, monkeypatch):
    # the earlier index's entry of en-000002.tar is malformed (reported, its shard written again); a run with larger
    # shards, stopped after it retired that index, and the run after it still remove that tar
    from xlsr.data import shards as shards_mod

    data, out = _corpus(tmp_path), tmp_path / "shards"
    write_shards(data, out, shard_size=SHARD_SIZE, splits=["train"], show_progress=False)
    index = json.loads((out / "index.json").read_text())
    index["shards"][2]["lines"] = 5
    (out / "index.json").write_text(json.dumps(index))

    def stopped(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(shards_mod._OpenShard, "place", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_shards(data, out, shard_size=4 * SHARD_SIZE, splits=["train"], show_progress=False)
    monkeypatch.undo()
    assert not (out / "index.json").exists()  # retired into the partial index
    report = write_shards(data, out, shard_size=4 * SHARD_SIZE, splits=["train"], show_progress=False)
    assert [s.path for s in report.index.shards] == ["train/en-000000.tar"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["en-000000.tar"]


def test_a_split_not_sharded_again_stays_listed_and_another_shard_size_replaces_it(tmp_path, caplog):
    # a run over train alone keeps the dev shards an earlier run wrote, listed with their source, untouched
    data, out = _corpus(tmp_path), tmp_path / "shards"
    write_manifest(data / "en" / "dev.jsonl", [Utterance(str(tmp_path / "wav" / "u00.wav"), 3200, "en", id="d")])
    both = write_shards(data, out, shard_size=SHARD_SIZE, splits=["train", "dev"], show_progress=False)
    dev = [s for s in both.index.shards if s.split == "dev"]
    dev_bytes = {s.path: (out / s.path).read_bytes() for s in dev}
    train_only = write_shards(data, out, shard_size=SHARD_SIZE, splits=["train"], show_progress=False)
    assert (train_only.kept, train_only.written) == (4, 0)
    index = read_index(out)
    assert [s for s in index.shards if s.split == "dev"] == dev and "dev/en" in index.sources
    assert {p: (out / p).read_bytes() for p in dev_bytes} == dev_bytes
    again = write_shards(data, out, shard_size=SHARD_SIZE, splits=["train", "dev"], show_progress=False)
    assert again.index.shards == both.index.shards and (again.kept, again.written) == (5, 0)
    # with another shard size, the dev shards (written with the old one) are no longer this folder's: removed,
    # and written again by the next run over dev
    caplog.set_level(logging.WARNING)
    write_shards(data, out, shard_size=SHARD_SIZE * 2, splits=["train"], show_progress=False)
    assert sorted({p.parent.name for p in out.rglob("*.tar")}) == ["train"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{out}/dev: its shards were written with another --shard-size and are removed (shard it again: --splits "
        f"train,dev)"]
    assert [s.split for s in read_index(out).shards if s.split == "dev"] == []


def test_missing_data_and_empty_splits_are_one_line_each(tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING)
    with pytest.raises(XlsrError) as exc:
        write_shards(tmp_path / "nonexist", tmp_path / "x", show_progress=False)
    assert str(exc.value) == f"{tmp_path / 'nonexist'}: no such data folder" and caplog.records == []
    data = _corpus(tmp_path)
    for splits in ("", " , "):
        capsys.readouterr()
        assert main(["data", "shard", "--data", str(data), "--out", str(tmp_path / "x"), "--splits", splits]) == 2
        assert capsys.readouterr().err.strip() == "xlsr: error: --splits: give at least one split name"
    assert caplog.records == [] and not (tmp_path / "x").exists()


def test_a_split_named_twice_is_sharded_once(tmp_path):
    data = _corpus(tmp_path)
    report = write_shards(data, tmp_path / "shards", shard_size=SHARD_SIZE, splits=["train", "train"],
                          show_progress=False)
    assert [s.path for s in report.index.shards] == [f"train/en-{i:06d}.tar" for i in range(4)]
    assert list(read_index(tmp_path / "shards").sources) == ["train/en"]


def _train_and_dev(tmp_path) -> tuple[Path, Path]:
    data, out = _corpus(tmp_path), tmp_path / "shards"
    write_manifest(data / "en" / "dev.jsonl", [Utterance(str(tmp_path / "wav" / "u00.wav"), 3200, "en", id="d")])
    write_shards(data, out, shard_size=SHARD_SIZE, splits=["train", "dev"], show_progress=False)
    return data, out


def test_a_carried_split_keeps_its_sources_when_this_run_rewrites_a_tar(tmp_path):
    data, out = _train_and_dev(tmp_path)
    sources = read_index(out).sources
    (out / "train" / "en-000001.tar").unlink()  # written again below: the earlier index.json is moved aside first
    write_shards(data, out, shard_size=SHARD_SIZE, splits=["train"], show_progress=False)
    assert read_index(out).sources == sources
    again = write_shards(data, out, shard_size=SHARD_SIZE, splits=["train", "dev"], show_progress=False)
    assert (again.kept, again.written) == (5, 0)  # dev kept by its source's sha256, not written again


def test_a_carried_language_that_lost_a_tar_is_left_out_with_a_warning(tmp_path, caplog):
    data, out = _train_and_dev(tmp_path)
    (out / "dev" / "en-000000.tar").unlink()
    caplog.set_level(logging.WARNING)
    write_shards(data, out, shard_size=SHARD_SIZE, splits=["train"], show_progress=False)
    assert [s.split for s in read_index(out).shards] == ["train"] * 4 and "dev/en" not in read_index(out).sources
    assert any(f"{out / 'dev' / 'en-000000.tar'}: listed by the earlier index, missing or of another size now: en of "
               f"split dev is left out of the index (shard it again: --splits train,dev)" == r.getMessage()
               for r in caplog.records)
    caplog.clear()
    write_shards(data, out, shard_size=SHARD_SIZE * 2, splits=["train"], show_progress=False)
    assert not any("dev" in r.getMessage() for r in caplog.records)  # no dev shard left to speak of
