"""`xlsr data check`: the exit status says whether anything is bad, the summary counts it per manifest, bad input is
one line before any decoding, and Ctrl-C stops with one line saying how to go on (which the same command does)."""

import json
from pathlib import Path

import _check_audio_helpers as fakes
import pytest
from _check_audio_helpers import damage, write_corpus

import xlsr.data.check_audio
from xlsr.cli.main import main


def run(argv) -> int:
    return main(["data", "check", "--no-progress", *map(str, argv)])


def test_exit_status_and_summary(tmp_path, capsys):
    data = tmp_path / "data"
    es = write_corpus(data, ["a", "b"])
    write_corpus(data, ["c"], lang="de")
    assert run(["--data", data, "--out", tmp_path / "r.jsonl", "--workers", 1]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{data}/de/train.jsonl: 1 files, 0.000 h checked; none bad",
                   f"{data}/es/train.jsonl: 2 files, 0.000 h checked; none bad",
                   f"checked 3 files (0.000 h) in 2 manifest(s): 0 bad, listed in {tmp_path / 'r.jsonl'}"]
    assert (tmp_path / "r.jsonl").read_text() == ""

    write_corpus(data, ["a", "garbled", "b", "wrong", "gone"])
    damage(es)
    assert run(["--data", data, "--splits", "train", "--out", tmp_path / "r.jsonl", "--workers", 2,
                "--write-clean", tmp_path / "clean"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"{es}: 5 files, 0.000 h checked; 3 bad (2 unreadable, 1 wrong_length)"
    assert out[3] == f"manifests without the bad utterances in {tmp_path / 'clean'}"
    assert [json.loads(line)["id"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == [
        "garbled", "wrong", "gone"]
    assert [json.loads(line)["id"] for line in (tmp_path / "clean/es/train.jsonl").read_text().splitlines()] == [
        "a", "b"]


def _refused(argv, capsys) -> str:
    """The one `xlsr: error:` line of a check refused with status 2."""
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize("case, argv, said", [
    ("no manifests", ["--out", "{t}/r.jsonl"],
     "give the manifests to check: --data DIR, --manifest FILE ..., or both"),
    ("missing folder", ["--data", "{t}/nowhere", "--out", "{t}/r.jsonl"], "{t}/nowhere: no such data folder"),
    ("missing manifest", ["--manifest", "{t}/data/es/test.jsonl", "--out", "{t}/r.jsonl"],
     "{t}/data/es/test.jsonl: no such manifest"),
    ("no split matched", ["--data", "{t}/data", "--splits", "dev,test", "--out", "{t}/r.jsonl"],
     "{t}/data: no manifests <lang>/<split>.jsonl for split(s) dev, test (found: train)"),
    ("splits without data", ["--manifest", "{t}/data/es/train.jsonl", "--splits", "train", "--out", "{t}/r.jsonl"],
     "--splits: chooses among the manifests of --data DIR; give --data too"),
    ("unwritable out", ["--data", "{t}/data", "--out", "{t}/file/r.jsonl"],
     "--out {t}/file/r.jsonl: cannot write there (a file is in the way where a folder is needed)"),
    ("out is a manifest", ["--data", "{t}/data", "--out", "{t}/data/es/train.jsonl"],
     "--out {t}/data/es/train.jsonl: is a manifest being checked; give another file name for the report"),
    ("no workers", ["--data", "{t}/data", "--out", "{t}/r.jsonl", "--workers", "0"],
     "--workers: give a whole number 1 or more, got 0"),
    ("clean into the data", ["--data", "{t}/data", "--out", "{t}/r.jsonl", "--write-clean", "{t}/data/"],
     "--write-clean {t}/data: is the data folder itself; give another folder (the originals stay as they are)"),
])
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, case, argv, said):
    manifest = write_corpus(tmp_path / "data", ["a"])
    (tmp_path / "file").write_text("in the way\n")
    before = manifest.read_bytes()
    line = _refused([a.format(t=tmp_path) for a in argv], capsys)
    assert line == "xlsr: error: " + said.format(t=tmp_path)
    assert manifest.read_bytes() == before
    assert not list(tmp_path.glob("r.jsonl*"))


def test_ctrl_c_stops_with_one_line_and_the_same_command_goes_on(tmp_path, capsys, monkeypatch, ctrl_c):
    names = ["a", "b", "stop", "c", "garbled", "d"]
    manifest = write_corpus(tmp_path / "data", names)
    (manifest.parent / "wav" / "garbled.flac").write_bytes(b"\0" * 300)
    monkeypatch.setenv("CHECK_AUDIO_LOG", str(tmp_path / "decoded.log"))
    # the decoder the workers get: its first *stop* file sends the parent SIGINT, as Ctrl-C in a terminal does
    monkeypatch.setattr(xlsr.data.check_audio, "load_audio", fakes.interrupting_parent)
    argv = ["--data", tmp_path / "data", "--out", tmp_path / "r.jsonl", "--workers", 1]

    assert run(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    partial = Path(f"{tmp_path}/r.jsonl.partial")
    kept = {names[json.loads(line)["at"][1]] for line in partial.read_text().splitlines()[1:]}
    assert err == [f"xlsr: interrupted: {len(kept)} of 6 files checked, kept in {partial}; the same command goes "
                   f"on from there"]
    # stopped at the stop file, with the worker at most one ahead (b's answer, on its way as Ctrl-C came, may be lost:
    # the pool's wait for an answer is interrupted at once, and the rerun decodes b again)
    assert "a" in kept and "d" not in kept
    first = len((tmp_path / "decoded.log").read_text().splitlines())

    assert run(argv) == 1
    rerun = (tmp_path / "decoded.log").read_text().splitlines()[first:]
    # only the files not kept are decoded again (garbled, unreadable, is never logged)
    assert sorted(Path(p).stem for p in rerun) == sorted(set(names) - kept - {"garbled"})
    assert [json.loads(line)["id"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == ["garbled"]
    assert not partial.exists()


def test_a_decoder_that_hangs_is_stopped_after_decode_timeout_and_its_file_reported(tmp_path, capsys, monkeypatch):
    manifest = write_corpus(tmp_path / "data", ["a", "b_hang", "c"])
    monkeypatch.setattr(xlsr.data.check_audio, "load_audio", fakes.hanging_on_marked)
    assert run(["--manifest", manifest, "--out", tmp_path / "r.jsonl", "--workers", 1, "--decode-timeout", 1]) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"{manifest}: 3 files, 0.000 h checked; 1 bad (1 crashed)"
    [bad] = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    audio = f"{manifest.parent}/wav/b_hang.flac"
    assert (bad["id"], bad["kind"]) == ("b_hang", "crashed")
    assert bad["message"] == f"{audio}: decoder hung (no answer in 1 s; its worker was stopped)"
