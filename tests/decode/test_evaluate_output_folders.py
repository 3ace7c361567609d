"""`xlsr evaluate --json/--hyps` into folders not made yet: the folders are made (as `xlsr transcribe --out`'s), so
that the report is written rather than refused after the whole evaluation ("no such file or directory") with the
hypotheses lost; a folder that cannot be made is said before any recording is decoded."""

import json
from pathlib import Path

import pytest
from test_evaluate import constant_model, manifest

from xlsr.cli.main import main

VOCAB = ["<blank>", "<unk>", "|", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _args(tmp_path: Path, json_path: Path, hyps_path: Path) -> list[str]:
    ckpt = constant_model(tmp_path, VOCAB, "a", "phones")
    m = manifest(tmp_path, [{"lang": "xx", "phones": "a i u"}])  # hyp "a": 2 deletions of 3
    return ["evaluate", "--model", str(ckpt), "--manifest", str(m), "--json", str(json_path), "--hyps",
            str(hyps_path), "--no-progress", "--decode-workers", "0"]


def test_the_report_and_hypotheses_are_written_into_folders_not_made_yet(tmp_path):
    report, hyps = tmp_path / "new" / "report.json", tmp_path / "other" / "deeper" / "hyps.jsonl"
    assert main(_args(tmp_path, report, hyps)) == 0
    data = json.loads(report.read_text())
    assert data["total"]["per"]["deletions"] == 2 and data["total"]["per"]["ref_len"] == 3
    assert [json.loads(line)["hyp"] for line in hyps.read_text().splitlines()] == ["a"]


def test_a_folder_that_cannot_be_made_is_said_before_the_evaluation(tmp_path, capsys, monkeypatch):
    from xlsr.decode import transcribe as transcribe_module

    (tmp_path / "file").write_text("not a folder")
    decoded = []
    monkeypatch.setattr(transcribe_module, "_decode_batch", lambda *a, **kw: decoded.append(1))
    assert main(_args(tmp_path, tmp_path / "file" / "report.json", tmp_path / "hyps.jsonl")) == 2
    err = capsys.readouterr().err
    assert err == f"xlsr: error: {tmp_path / 'file'}: a file is in the way where a folder is needed\n"
    assert not decoded and not (tmp_path / "hyps.jsonl").exists()
