"""Paths a user's files have: a recording named `-`, a manifest reached through a loop of links, and audio folders
laid out as links (into a store, back up the tree, to nowhere)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.audio import audio_blocks, audio_num_samples, load_audio
from xlsr.data.importers import import_audio_folder, import_folder
from xlsr.data.manifest import read_manifest
from xlsr.errors import ManifestError


def _flac(path: Path, seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, 16000, format="FLAC")
    return x


@pytest.fixture
def stdin_empty():
    """fd 0 on /dev/null while inside: libsndfile reads the name `-` from it, and must not wait on a terminal."""
    saved = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(null)


def test_a_recording_named_dash_is_read_from_its_file_not_from_stdin(tmp_path, monkeypatch, stdin_empty):
    # `xlsr transcribe ./-` and `xlsr stream --model M ./-`: pathlib makes `./-` into `-`, libsndfile's name for stdin
    _flac(tmp_path / "-", 0.5)
    expected = load_audio(tmp_path / "-")
    monkeypatch.chdir(tmp_path)
    for given in ("./-", Path("./-"), "-"):
        np.testing.assert_array_equal(load_audio(given), expected)
        assert audio_num_samples(given) == len(expected)
        np.testing.assert_array_equal(np.concatenate(list(audio_blocks(given, 0.1))), expected)


def test_a_manifest_reached_through_a_loop_of_links_is_one_manifest_error(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(ManifestError, match=r"a/train\.jsonl: no such manifest$"):
        read_manifest(tmp_path / "a" / "train.jsonl")


def _store_and_corpus(tmp_path: Path) -> tuple[Path, Path]:
    """A store of recordings outside the corpus folder, and a corpus of one own file plus links: to the store (twice),
    back up to the corpus itself, to a file that is gone, and two links that point at each other."""
    store, src = tmp_path / "store", tmp_path / "corpus"
    _flac(store / "spk1" / "a.flac", 0.3)
    _flac(store / "spk1" / "b.flac", 0.4)
    _flac(src / "own.flac", 0.5)
    (src / "spk1").symlink_to(store / "spk1")
    (src / "spk1 again").symlink_to(store / "spk1")  # the same folder by a second name: read once
    (src / "up").symlink_to("..")  # holds the corpus: a loop, not searched
    (src / "self").symlink_to(".")
    return store, src


def test_an_audio_folder_import_reads_linked_subfolders_once_and_names_broken_links(tmp_path):
    store, src = _store_and_corpus(tmp_path)
    (src / "gone.flac").symlink_to(tmp_path / "nowhere.flac")
    (src / "x.flac").symlink_to("y.flac")
    (src / "y.flac").symlink_to("x.flac")
    out = tmp_path / "data"
    summary = import_audio_folder(src, out, lang="es", max_bad_share=0.9)
    lines = [json.loads(line) for line in (out / "es" / "train.jsonl").read_text().splitlines()]
    # the store's files once, by the first link's name (spk1, not spk1 again), read where they lie
    assert [(r["id"], r["audio"]) for r in lines] == [
        ("own", str(src / "own.flac")),
        ("spk1/a", str(store / "spk1" / "a.flac")),
        ("spk1/b", str(store / "spk1" / "b.flac")),
    ]
    assert summary.skipped == 3
    skipped = (out / "import_skipped.txt").read_text()
    assert f"{src / 'gone.flac'}: a link that leads to no file (no such file or directory)" in skipped
    assert f"{src / 'x.flac'}: a link that leads to no file (too many levels of symbolic links)" in skipped
    assert f"{src / 'y.flac'}: a link that leads to no file" in skipped


def test_a_transcript_finds_a_recording_in_a_linked_subfolder(tmp_path):
    store, src = _store_and_corpus(tmp_path)
    transcripts = tmp_path / "t.txt"
    transcripts.write_text("spk1/a\thola\nown.flac\tadios\n")
    import_folder(src, transcripts, tmp_path / "data", lang="es")
    lines = [json.loads(line) for line in (tmp_path / "data" / "es" / "train.jsonl").read_text().splitlines()]
    assert [(r["id"], r["audio"], r["text"]) for r in lines] == [
        ("spk1/a", str(store / "spk1" / "a.flac"), "hola"),
        ("own", str(src / "own.flac"), "adios"),
    ]


def test_transcribe_finds_in_a_folder_what_the_folder_import_finds(tmp_path):
    """(it searched with rglob: linked subfolders passed over, broken links dropped without a word)"""
    from xlsr.decode.transcribe import find_audio

    store, src = _store_and_corpus(tmp_path)
    (src / "gone.flac").symlink_to(tmp_path / "nowhere.flac")
    files, failures = find_audio([src])
    assert files == [src / "gone.flac", src / "own.flac", src / "spk1" / "a.flac", src / "spk1" / "b.flac"]
    assert failures == []  # the broken link fails as it is read, naming itself, like an unreadable file


def test_a_folder_through_a_loop_of_links_is_one_line_in_every_command(tmp_path, capsys):
    """(Path.resolve raises RuntimeError for a loop on Python 3.11-3.12: a traceback from synth, data shard, analyze,
    convert and normalize-text)"""
    from xlsr.cli.main import main

    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    code = main(["synth", "--out", str(tmp_path / "loopA" / "x"), "--langs", "es", "--utts-per-lang", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("xlsr: error: ") and "loopA" in err, err
    assert "symbolic links" in err


def test_a_home_folder_the_shell_left_unexpanded_is_the_home_folder(tmp_path, monkeypatch):
    """(`--out=~/runs` is not expanded by the shell: xlsr made a folder named `~` in the working folder)"""
    from xlsr.cli import main as cli_main

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cli_main._home_expanded("--out=~/runs/a") == f"--out={tmp_path / 'home'}/runs/a"
    assert cli_main._home_expanded("~/data") == f"{tmp_path / 'home'}/data"
    assert cli_main._home_expanded("~") == str(tmp_path / "home")
    for kept in ("~user/x", "--lr=1e-3", "a~b", "--out=x~/y", "-~/x"):
        assert cli_main._home_expanded(kept) == kept


def test_a_command_is_given_the_home_folder_for_an_unexpanded_tilde(tmp_path, monkeypatch, capsys):
    from xlsr.cli.main import main

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "~/run"]) == 2
    assert f"there is no folder {tmp_path / 'home' / 'run'}" in capsys.readouterr().err
