"""Re-running `xlsr data shard` over a folder an earlier run left damaged: a tar cut short since it was listed is
written again, and a tar replaced by a run stopped just after the rename is not taken for the entry it replaced."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.data import shards as shards_mod
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shard_index import read_index
from xlsr.data.shards import write_shards

SR = 16000
SHARD_SIZE = 75_000  # bytes: 40 clips of 0.2 s in 4 shards


def _corpus(root: Path, text: str, lang: str = "en") -> Path:
    """DIR/<lang>/train.jsonl of 40 equal-length noise clips labelled `text` (another text: shards of the same
    sizes); DIR is root/data."""
    rng = np.random.default_rng(0)
    utts = []
    for i in range(40):
        path = root / "wav" / f"u{i:02d}.wav"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.1 * rng.standard_normal(3200)).astype(np.float32), SR)
        utts.append(Utterance(str(path), 3200, lang, text=text, id=f"u{i:02d}"))
    write_manifest(root / "data" / lang / "train.jsonl", utts)
    return root / "data"


def _tars(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.tar"))}


def _run(data: Path, out: Path):
    return write_shards(data, out, shard_size=SHARD_SIZE, splits=["train"], show_progress=False)


def test_a_listed_tar_cut_short_is_written_again(tmp_path):
    data, out = _corpus(tmp_path, "a"), tmp_path / "shards"
    _run(data, out)
    straight = _tars(out)
    first = out / read_index(out).shards[0].path
    first.write_bytes(first.read_bytes()[:-2048])  # a copy cut in its last member
    report = _run(data, out)
    assert report.written >= 1 and report.kept == len(report.index.shards) - report.written
    assert _tars(out) == straight


def test_a_tar_replaced_by_a_run_stopped_after_its_rename_is_not_kept_for_the_entry_it_replaced(tmp_path, monkeypatch):
    data, out = _corpus(tmp_path, "a"), tmp_path / "shards"
    _run(data, out)
    straight = _tars(out)
    _corpus(tmp_path, "b")  # another manifest, whose shards have the same sizes
    place = shards_mod._OpenShard.place

    def stopped_after_the_rename(self):
        place(self)
        raise KeyboardInterrupt  # before the new entry reaches the partial index

    monkeypatch.setattr(shards_mod._OpenShard, "place", stopped_after_the_rename)
    with pytest.raises(KeyboardInterrupt):
        _run(data, out)
    monkeypatch.undo()
    assert _tars(out) != straight  # the first tar holds manifest b's labels now
    _corpus(tmp_path, "a")  # back to the first manifest: its old entries match it, but not that tar
    _run(data, out)
    assert _tars(out) == straight


def test_a_rerun_stopped_on_one_language_keeps_the_other_languages_shards_for_the_next(tmp_path, monkeypatch):
    data, out = _corpus(tmp_path, "a", "aa"), tmp_path / "shards"
    _corpus(tmp_path, "b", "bb")
    aa_shards = [s for s in _run(data, out).index.shards if s.lang == "aa"]
    _corpus(tmp_path, "c", "bb")  # bb's manifest changes; aa's does not
    place = shards_mod._OpenShard.place

    def stopped(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(shards_mod._OpenShard, "place", stopped)  # aa kept whole, bb stopped at its first tar
    with pytest.raises(KeyboardInterrupt):
        _run(data, out)
    monkeypatch.setattr(shards_mod._OpenShard, "place", place)
    report = _run(data, out)
    assert report.kept == len(aa_shards) and [s for s in report.index.shards if s.lang == "aa"] == aa_shards
