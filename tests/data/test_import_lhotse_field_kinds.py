"""A lhotse item whose fields lhotse cannot use (a duration "abc", a sampling rate 0, a numeric text) is a bad item:
reported with its location and skipped under --max-bad-share, like a broken line, not a traceback from inside
lhotse."""

import json

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from xlsr.cli.main import main
from xlsr.data import import_lhotse as import_lhotse_mod
from xlsr.data.import_lhotse import import_lhotse
from xlsr.data.import_writer import SKIPPED_FILE
from xlsr.data.manifest import read_manifest
from xlsr.errors import XlsrError


@pytest.fixture
def recordings(tmp_path):
    """Four 1 s recordings r0..r3 of 16 kHz mono files."""
    recs = []
    for i in range(4):
        path = tmp_path / "src" / f"r{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, np.random.default_rng(i).uniform(-0.3, 0.3, 16000), 16000)
        recs.append(Recording.from_file(path, recording_id=f"r{i}"))
    return recs


def _edit(path, number, **fields):
    """Line `number` (from 1) of a JSONL file with `fields` set; a key 'a.b' sets b in a's first list item or dict."""
    lines = path.read_text().splitlines()
    record = json.loads(lines[number - 1])
    for key, value in fields.items():
        outer, _, inner = key.partition(".")
        if inner:
            target = record[outer][0] if isinstance(record[outer], list) else record[outer]
            target[inner] = value
        else:
            record[key] = value
    lines[number - 1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def test_recordings_whose_fields_lhotse_cannot_use_are_bad_items(recordings, tmp_path, capsys):
    rec = tmp_path / "rec.jsonl"
    RecordingSet.from_recordings(recordings).to_file(rec)
    _edit(rec, 1, duration="abc")  # what lhotse's round() raised a TypeError on
    _edit(rec, 3, sampling_rate=0)
    capsys.readouterr()
    assert main(["data", "import", "lhotse", "--src", str(rec), "--out", str(tmp_path / "lh"), "--lang", "es",
                 "--max-bad-share", "0.5"]) == 0
    assert [u.audio for u in read_manifest(tmp_path / "lh" / "es" / "train.jsonl")] == [
        str(tmp_path / "src" / f"r{i}.wav") for i in (1, 3)]
    assert (tmp_path / "lh" / SKIPPED_FILE).read_text().splitlines() == [
        f"{rec}: line 1: recording duration 'abc' is not a number of seconds 0 or more",
        f"{rec}: line 3: recording sampling_rate 0 is not a whole number above 0"]
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(XlsrError, match=r"rec.jsonl: 2 of 4 cuts \(50.0%\) could not be imported"):
        import_lhotse(rec, tmp_path / "capped", lang="es", show_progress=False)


def test_supervisions_whose_fields_lhotse_cannot_use_are_bad_items(recordings, tmp_path):
    rec, sup = tmp_path / "rec.jsonl", tmp_path / "sup.jsonl"
    RecordingSet.from_recordings(recordings).to_file(rec)
    SupervisionSet.from_segments([SupervisionSegment(f"s{i}", f"r{i}", 0.0, 1.0, text=f"word {i}", language="de")
                                  for i in range(4)]).to_file(sup)
    _edit(sup, 2, start="x")  # lhotse's CutSet building compared it with a number
    _edit(sup, 4, text=5)  # our labels joined its texts
    summary = import_lhotse([rec, sup], tmp_path / "out", max_bad_share=0.5, show_progress=False)
    assert [u.text for u in read_manifest(tmp_path / "out" / "de" / "train.jsonl")] == ["word 0", "word 2"]
    assert summary.skipped == 2 and (tmp_path / "out" / SKIPPED_FILE).read_text().splitlines() == [
        f"{sup}: line 2: supervision start 'x' is not a number of seconds",
        f"{sup}: line 4: supervision text 5 is not a string or null"]


def test_cuts_whose_fields_lhotse_cannot_use_are_bad_items(recordings, tmp_path):
    cuts = tmp_path / "cuts.jsonl"
    sups = [SupervisionSegment(f"s{i}", f"r{i}", 0.0, 1.0, text=f"word {i}", language="de") for i in range(4)]
    CutSet.from_manifests(recordings=RecordingSet.from_recordings(recordings),
                          supervisions=SupervisionSet.from_segments(sups)).to_file(cuts)
    _edit(cuts, 1, duration="1.0")
    _edit(cuts, 2, **{"recording.duration": "abc"})
    _edit(cuts, 3, **{"supervisions.language": 7})
    summary = import_lhotse(cuts, tmp_path / "out", max_bad_share=0.75, show_progress=False)
    assert [u.text for u in read_manifest(tmp_path / "out" / "de" / "train.jsonl")] == ["word 3"]
    assert summary.skipped == 3 and (tmp_path / "out" / SKIPPED_FILE).read_text().splitlines() == [
        f"{cuts}: cut 1: cut duration '1.0' is not a number of seconds 0 or more",
        f"{cuts}: cut 2: recording duration 'abc' is not a number of seconds 0 or more",
        f"{cuts}: cut 3: supervision language 7 is not a string or null"]


def test_a_type_error_lhotse_raises_on_a_cut_is_that_cuts_failure(recordings, tmp_path, monkeypatch):
    # a field of a kind of cut the checks do not know: lhotse's TypeError is the cut's, not the import's
    RecordingSet.from_recordings(recordings).to_file(tmp_path / "rec.jsonl")
    whole_file = import_lhotse_mod.whole_file

    def fails_on_r2(cut):
        if cut.recording_id == "r2":
            round("abc")  # as lhotse's compute_num_samples does on a string duration
        return whole_file(cut)
    monkeypatch.setattr(import_lhotse_mod, "whole_file", fails_on_r2)
    summary = import_lhotse(tmp_path / "rec.jsonl", tmp_path / "out", lang="es", max_bad_share=0.3,
                            show_progress=False)
    assert summary.skipped == 1 and len(read_manifest(tmp_path / "out" / "es" / "train.jsonl")) == 3
    assert (tmp_path / "out" / SKIPPED_FILE).read_text().splitlines()[0].endswith(
        "fields lhotse cannot use (TypeError: type str doesn't define __round__ method)")
