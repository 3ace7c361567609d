"""A manifest line whose speaker is null or empty reads as speaker "unknown", the same by the reader and the index."""

import json

from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import read_manifest


def test_a_null_or_empty_speaker_is_unknown_in_the_reader_and_the_index(tmp_path):
    path = tmp_path / "m.jsonl"
    lines = [{"audio": "a.wav", "num_samples": 800, "lang": "es", "speaker": None},
             {"audio": "b.wav", "num_samples": 800, "lang": "es", "speaker": ""},
             {"audio": "c.wav", "num_samples": 800, "lang": "es"},
             {"audio": "d.wav", "num_samples": 800, "lang": "es", "speaker": "s1"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    expected = ["unknown", "unknown", "unknown", "s1"]
    assert [u.speaker for u in read_manifest(path)] == expected
    assert [u.speaker for u in open_manifest(path)] == expected
