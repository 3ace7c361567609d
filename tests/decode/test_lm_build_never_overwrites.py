"""`xlsr lm build` writes its LM and side files (OUT.json, OUT.words.txt) over no file but an LM it built: never
over the training text, audio, or a user's file that happens to bear a side file's name."""

import json

import pytest
from decode_fixtures import needs_kenlm

from xlsr.cli.main import main
from xlsr.decode.lm import build_lm, sidecar_path, words_path
from xlsr.errors import XlsrError

TEXT = "the cat sat\nthe dog sat\n"


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def _refused(argv, capsys, said):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xlsr: error: {said}") and err.count("\n") == 1, err


def test_an_out_that_is_the_training_text_is_refused(text, tmp_path, capsys):
    _refused(["lm", "build", "--text", text, "--out", text], capsys,
             f"--out {text}: is the training text (--text {text}), which writing the LM would overwrite")
    link = tmp_path / "lm.bin"
    link.symlink_to(text)
    _refused(["lm", "build", "--text", text, "--out", link], capsys, f"--out {link}: is the training text")
    assert text.read_text() == TEXT


def test_a_side_file_that_is_the_training_text_is_refused(tmp_path, capsys):
    words = tmp_path / "lm.bin.words.txt"
    words.write_text(TEXT)
    _refused(["lm", "build", "--text", words, "--out", tmp_path / "lm.bin"], capsys,
             f"--out {tmp_path / 'lm.bin'}: its side file {words} is the training text")
    with pytest.raises(XlsrError, match=r"lm\.bin: its side file .*lm\.bin\.words\.txt is the training text"):
        build_lm(words, 2, tmp_path / "lm.bin")  # the library refuses it as the command does
    assert words.read_text() == TEXT and not (tmp_path / "lm.bin").exists()


def test_an_existing_out_that_is_no_lm_of_ours_is_refused(text, tmp_path, capsys):
    wav = tmp_path / "victim.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    _refused(["lm", "build", "--text", text, "--out", wav], capsys,
             f"--out {wav}: exists and is not a language model xlsr lm build wrote (it has no sidecar {wav}.json")
    sidecar_path(wav).write_text('{"model": "runs/ft", "total": {}}\n')  # a sidecar's name, not its content
    _refused(["lm", "build", "--text", text, "--out", wav], capsys,
             f"--out {wav}: exists and is not a language model xlsr lm build wrote")
    assert wav.read_bytes() == b"RIFF\x24\x00\x00\x00WAVEfmt "


@pytest.mark.parametrize("side", [sidecar_path, words_path])
def test_a_users_file_with_a_side_files_name_is_refused(text, tmp_path, capsys, side):
    theirs = side(tmp_path / "report")
    theirs.write_text('{"total": 1}\n')
    _refused(["lm", "build", "--text", text, "--out", tmp_path / "report"], capsys,
             f"--out {tmp_path / 'report'}: its side file {theirs} exists and is not one that xlsr lm build wrote")
    assert theirs.read_text() == '{"total": 1}\n' and not (tmp_path / "report").exists()


@needs_kenlm
def test_an_lm_it_built_is_built_again_in_place(text, tmp_path):
    out = build_lm(text, 2, tmp_path / "lm.arpa")
    text.write_text("a cow sat\n")
    assert build_lm(text, 2, out) == out
    assert "cow" in out.read_text() and words_path(out).read_text().split() == ["a", "cow", "sat"]
    assert json.loads(sidecar_path(out).read_text())["units"] == "words"
