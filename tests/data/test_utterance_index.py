import json
import logging
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from xlsr.data import index_cache
from xlsr.data.batching import pretrain_loader
from xlsr.data.index_cache import open_manifest, open_split, sidecar
from xlsr.data.manifest import read_manifest, read_split
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import ManifestError


def _line(i: int) -> dict:
    """Line i of a manifest that uses every optional form a manifest may have."""
    record = {"audio": f"clips/ü{i}.flac" if i % 3 else f"/abs/dir/{i}.wav", "num_samples": 1000 + 7 * i,
              "lang": ["es", "de", "zh"][i % 3]}
    if i % 4:
        record["id"] = f"utt-{i}"
    if i % 5:
        record["speaker"] = f"spk{i % 11}"
    if i % 2:
        record["text"] = f"hola {i} ñ" if i % 7 else ""
    if i % 6 == 1:
        record["phones"] = "o l a"
    return record


def _write(path, records, bad: dict[int, str] | None = None):
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    for at, text in (bad or {}).items():
        lines.insert(at - 1, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_index_round_trips_a_manifest_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(index_cache, "CHUNK_ROWS", 16)  # several chunks, and a partial last one
    path = _write(tmp_path / "train.jsonl", [_line(i) for i in range(101)])
    index = open_manifest(path)
    expected = read_manifest(path)
    assert list(index) == expected
    assert index.num_samples.tolist() == [u.num_samples for u in expected]
    assert [index.lang(i) for i in range(len(index))] == [u.lang for u in expected]
    assert [index.label(i, "text") for i in range(len(index))] == [u.text for u in expected]
    assert index.num_speakers() == len({u.speaker for u in expected})
    assert index.where(5) == f"{path}:6"
    assert list(open_manifest(path)) == expected  # and again from the cache
    assert list(pickle.loads(pickle.dumps(index))) == expected


def test_label_columns_read_in_bulk_equal_those_read_one_by_one(tmp_path):
    a = open_manifest(_write(tmp_path / "a.jsonl", [_line(i) for i in range(40)]))
    b = open_manifest(_write(tmp_path / "b.jsonl", [_line(i) for i in range(40, 75)]))
    # two tables, rows out of order and repeated, a chunk smaller than the selection
    index = UtteranceIndex.concat([b, a]).subset(np.array([70, 3, 3, 41, 0, 74, 39, 40, 12]))
    for field in ("text", "phones"):
        expected = [index.label(i, field) for i in range(len(index))]
        assert list(index.labels(field, chunk=4)) == expected == [getattr(u, field) for u in index]
    assert None in expected and "" in [index.label(i, "text") for i in range(len(index))]
    assert list(index.subset(np.zeros(0, dtype=np.int64)).labels("text")) == []


def test_index_follows_the_manifest_when_it_changes(tmp_path, monkeypatch):
    path = _write(tmp_path / "train.jsonl", [_line(i) for i in range(20)])
    assert len(open_manifest(path)) == 20
    builds = []
    real = index_cache.build_index
    monkeypatch.setattr(index_cache, "build_index", lambda *a: builds.append(a) or real(*a))
    assert len(open_manifest(path)) == 20 and not builds  # unchanged: the cached index is used
    _write(path, [_line(i) for i in range(21)])
    assert len(open_manifest(path)) == 21 and len(builds) == 1
    # same size, same mtime, another first line: the content digest tells
    stat = path.stat()
    records = [_line(i) for i in range(21)]
    records[0]["lang"] = "fr"
    _write(path, records)
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert open_manifest(path)[0].lang == "fr" and len(builds) == 2


def test_a_bad_line_among_many_is_reported_and_skipped_under_the_cap(tmp_path, caplog):
    records = [_line(i) for i in range(1000)]
    path = _write(tmp_path / "train.jsonl", records, bad={501: '{"audio": "x.flac", "lang": "es"}'})
    with caplog.at_level(logging.WARNING):
        index = open_manifest(path, max_bad_share=0.05)
    assert len(index) == 1000 and list(index) == read_manifest(_write(tmp_path / "good.jsonl", records))
    assert f"{path}:501: missing field(s) num_samples" in caplog.text and "1 of 1001 lines" in caplog.text
    assert index.where(500) == f"{path}:502"  # the line after the bad one keeps its own number
    listed = (sidecar(path) / "bad_lines.txt").read_text().splitlines()
    assert listed == [f"{path}:501: missing field(s) num_samples"]
    with pytest.raises(ManifestError, match=r"train.jsonl:501: missing field\(s\) num_samples \(1 of 1001 lines"):
        open_manifest(path)  # the default cap is 0: every line must be good


def test_too_many_bad_lines_refuse_the_manifest(tmp_path):
    bad = {at: "not json" for at in range(3, 200, 10)}  # 20 bad lines of 200
    path = _write(tmp_path / "train.jsonl", [_line(i) for i in range(180)], bad=bad)
    with pytest.raises(ManifestError, match=r"train.jsonl:3: not valid JSON .*20 of 200 lines are bad, more than "
                                            r"max_bad_share=0.05"):
        open_manifest(path, max_bad_share=0.05)
    assert len(open_manifest(path, max_bad_share=0.2)) == 180


def test_read_only_folder_keeps_the_index_in_the_user_cache(tmp_path, monkeypatch, caplog):
    path = _write(tmp_path / "train.jsonl", [_line(i) for i in range(10)])
    real = index_cache.write_dir

    def refuse_beside(folder, write):
        if folder == sidecar(path):
            raise PermissionError(13, "Permission denied")
        return real(folder, write)

    monkeypatch.setattr(index_cache, "write_dir", refuse_beside)
    monkeypatch.setenv("XLSR_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING):
        index = open_manifest(path)
    assert list(index) == read_manifest(path)
    assert "cannot write the utterance index beside" in caplog.text and len(caplog.records) == 1
    assert index.tables[0].folder.startswith(str(tmp_path / "cache" / "index"))
    assert not sidecar(path).exists()


class _MappedFiles(Dataset):
    """In a worker: which of the index's column files the process has memory-mapped, and the pickled size."""

    def __init__(self, index: UtteranceIndex):
        self.index = index

    def __len__(self):
        return 1

    def __getitem__(self, i):
        folder = self.index.tables[0].folder
        with open("/proc/self/maps") as f:
            mapped = {line.split()[-1] for line in f if folder in line}
        return sorted(os.path.basename(m) for m in mapped), self.index.audio(3), os.getpid()


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_workers_share_the_memory_mapped_index(tmp_path):
    path = _write(tmp_path / "train.jsonl", [_line(i) for i in range(300)])
    index = open_manifest(path)
    assert isinstance(index.tables[0].codes["num_samples"], np.memmap)
    assert isinstance(index.tables[0].strings["audio"].data, np.memmap)
    assert len(pickle.dumps(index.tables[0])) < 500  # a spawned worker gets the folder, not the columns
    loader = DataLoader(_MappedFiles(index), batch_size=None, num_workers=1)
    mapped, audio, pid = next(iter(loader))
    assert pid != os.getpid() and audio == index.audio(3)
    assert {"num_samples.bin", "lang.bin", "audio.data.bin", "audio.offsets.bin"} <= set(mapped)


def test_loader_batches_from_an_index_equal_those_from_utterance_objects(tmp_path):
    rng = np.random.default_rng(0)
    for lang in ("es", "de"):
        (tmp_path / lang).mkdir()
        records = []
        for i in range(8):
            n = int(rng.integers(1500, 4000))
            sf.write(tmp_path / lang / f"{i}.flac", rng.standard_normal(n).astype(np.float32) * 0.1, 16000)
            records.append({"audio": f"{i}.flac", "num_samples": n, "lang": lang})
        _write(tmp_path / lang / "train.jsonl", records)
    kwargs = dict(max_tokens=8000, min_sample_size=1000, max_sample_size=3000, alpha=0.5, seed=3)
    from_index = list(pretrain_loader(open_split(tmp_path, "train"), **kwargs))
    from_objects = list(pretrain_loader(read_split(tmp_path, "train"), **kwargs))
    assert len(from_index) == len(from_objects) > 2
    for a, b in zip(from_index, from_objects):
        assert a.langs == b.langs and torch.equal(a.waveforms, b.waveforms)


def test_an_index_of_utterance_objects_gives_them_back_exactly():
    from xlsr.data.manifest import Utterance

    utts = [Utterance("/a/b.flac", 5, "es", text=""), Utterance("rel/c.flac", 7, "de", "s2", None, "p a", id="q"),
            Utterance("/a/d.flac", 9, "es", id="")]
    index = UtteranceIndex.from_utterances(utts)
    assert list(index) == utts and index.utterance_id(2) == ""
    assert list(index.subset([2, 0])) == [utts[2], utts[0]] and list(index[1:]) == utts[1:]
    assert list(UtteranceIndex.concat([index.subset([1]), index])) == [utts[1], *utts]
    assert list(pickle.loads(pickle.dumps(index))) == utts
    assert index.hours() == {"de": 7 / 16000 / 3600, "es": 14 / 16000 / 3600}
    assert {k: list(v) for k, v in index.by_language().items()} == {"de": [utts[1]], "es": [utts[0], utts[2]]}


def test_an_empty_language_manifest_is_named_not_silently_left_out(tmp_path, caplog):
    (tmp_path / "es").mkdir()
    (tmp_path / "it").mkdir()
    _write(tmp_path / "es" / "train.jsonl", [{**_line(i), "lang": "es"} for i in range(3)])
    (tmp_path / "it" / "train.jsonl").write_text("")
    with caplog.at_level(logging.WARNING):
        index = open_split(tmp_path, "train")
    assert len(index) == 3
    assert "it/train.jsonl: no utterances; that language takes no part in this split" in caplog.text
