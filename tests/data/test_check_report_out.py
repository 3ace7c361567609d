"""`xlsr data check --out REPORT` replaces only an earlier report: an existing file of anything else (an audio file of
the corpus, a manifest of another corpus, a note) is refused in one line and left as it is."""

import json

import pytest
from _check_audio_helpers import damage, write_corpus
from _shard_check_helpers import write_shard_folder

from xlsr.data.check_audio import check_audio
from xlsr.data.check_shard_folder import check_shard_folder
from xlsr.errors import XlsrError


@pytest.mark.parametrize("victim", ["audio", "note"])
def test_a_file_that_is_no_report_is_refused_and_kept(tmp_path, victim):
    manifest = write_corpus(tmp_path / "data", ["a", "b"])
    out = manifest.parent / "wav" / "a.flac" if victim == "audio" else tmp_path / "notes.txt"
    if victim == "note":
        out.write_text("my notes\n")
    before = out.read_bytes()
    with pytest.raises(XlsrError, match=rf"^--out {out}: exists and is not a report of xlsr data check \(it is left "
                                        rf"as it is\); give another file name for the report$"):
        check_audio([manifest], out, workers=0, show_progress=False)
    assert out.read_bytes() == before
    shards = write_shard_folder(tmp_path / "s", {("es", "train"): ["a", "b"]})
    with pytest.raises(XlsrError, match="exists and is not a report of xlsr data check"):
        check_shard_folder(shards, out, workers=0, show_progress=False)
    assert out.read_bytes() == before


def test_an_earlier_report_or_an_empty_file_is_replaced(tmp_path):
    manifest = write_corpus(tmp_path / "data", ["a", "garbled", "gone", "wrong"])
    damage(manifest)
    out = tmp_path / "r.jsonl"
    out.touch()
    check_audio([manifest], out, workers=0, show_progress=False)
    first = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert first == ["garbled", "gone", "wrong"]
    check_audio([manifest], out, workers=0, show_progress=False)  # the same command again: its report replaced
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == first
