"""The cached utterance index follows its manifest: an edit in the middle of a large manifest, which keeps its size
and both 64 KiB ends, is still seen (by its modification time), and the next open reads the new lines."""

import json
import os

from xlsr.data import index_cache
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import read_manifest


def _records(n: int) -> list[dict]:
    return [{"audio": f"clips/{i:05d}.flac", "num_samples": 16000 + i, "lang": "es", "speaker": f"spk{i % 7}",
             "text": f"frase número {i:05d}"} for i in range(n)]


def _write(path, records) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def test_an_edit_in_the_middle_of_a_large_manifest_that_keeps_its_size_is_seen(tmp_path):
    path = tmp_path / "train.jsonl"
    records = _records(2000)  # ~230 KB: the middle is outside the first and last DIGEST_BYTES
    _write(path, records)
    assert path.stat().st_size > 3 * index_cache.DIGEST_BYTES
    assert open_manifest(path)[1000].speaker == "spk6"
    before = path.stat()
    records[1000]["speaker"] = "spkX"  # same length: the file keeps its size, and its ends are untouched
    _write(path, records)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # as a later write would leave it
    index = open_manifest(path)
    assert index[1000].speaker == "spkX" and list(index) == read_manifest(path)
