"""A JSONL manifest whose first line alone is damaged (a hand edit that lost its `{`) is a manifest with one bad
line, judged by max_bad_share as any other, not "a table"; tables stay named as such."""

import pytest

from xlsr.data.index_cache import open_manifest
from xlsr.errors import ManifestError

GOOD = [f'{{"audio": "{name}.wav", "num_samples": 16000, "lang": "en"}}\n' for name in "bcd"]


def test_a_manifest_with_a_bad_first_line_is_read_without_it(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('"audio": "a.wav", "num_samples": 16000, "lang": "en"}\n' + "".join(GOOD), encoding="utf-8")
    utts = open_manifest(path, max_bad_share=0.5)
    assert [u.audio for u in utts] == [str(tmp_path / f"{name}.wav") for name in "bcd"]


def test_a_table_of_one_line_is_still_named(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("audio,num_samples,lang\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"a table \(tab- or comma-separated\), not a JSONL manifest"):
        open_manifest(path, max_bad_share=1.0)
