"""An audio file whose name is not UTF-8 (bytes a Latin-1 tool wrote) goes through manifests, the utterance index,
training's loader and `xlsr data check` under the same name: Python holds it as lone surrogates (os.fsdecode),
JSON as \\udcXX escapes, the index as the name's own bytes."""

import json
import os

import numpy as np
import soundfile as sf

from xlsr.cli.main import main
from xlsr.data.audio import load_audio
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import Utterance, read_manifest, write_manifest


def _named(folder, name: bytes, n: int = 16000) -> str:
    path = os.fsdecode(os.path.join(os.fsencode(folder), name))
    with open(os.fsencode(path), "wb") as f:
        sf.write(f, np.sin(np.arange(n) * 0.03).astype(np.float32), 16000, format="WAV")
    return path


def test_a_name_that_is_not_utf8_round_trips_through_manifest_and_index(tmp_path):
    path = _named(tmp_path, b"caf\xe9.wav")  # Latin-1 e-acute: no UTF-8
    manifest = tmp_path / "xx" / "train.jsonl"
    write_manifest(manifest, [Utterance(path, 16000, "xx", id="u0")])
    json.loads(manifest.read_bytes())  # valid JSON (UTF-8 throughout)
    assert read_manifest(manifest)[0].audio == path
    index = open_manifest(manifest)
    assert index.audio(0) == path and len(load_audio(index.audio(0))) == 16000


def test_data_check_reports_a_bad_file_under_its_own_name(tmp_path, capsys):
    good = _named(tmp_path, b"a.wav")
    bad = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"b\xff.wav"))
    with open(os.fsencode(bad), "wb") as f:
        f.write(b"\0" * 300)
    write_manifest(tmp_path / "data" / "xx" / "train.jsonl",
                   [Utterance(good, 16000, "xx", id="a"), Utterance(bad, 16000, "xx", id="b")])
    report = tmp_path / "r.jsonl"
    assert main(["data", "check", "--data", str(tmp_path / "data"), "--out", str(report), "--workers", "1",
                 "--no-progress"]) == 1
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["audio"], r["kind"]) for r in lines] == [("b", bad, "unreadable")]
    assert "1 bad (1 unreadable)" in capsys.readouterr().out
