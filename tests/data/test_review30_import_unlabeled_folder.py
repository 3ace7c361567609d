"""`xlsr data import folder SRC --lang L --out DIR` without --transcripts: a folder of unlabeled audio (wav, flac,
ogg, mp3 at any rate, in subfolders) becomes DIR/<L>/train.jsonl for pretraining; a damaged file is skipped and
listed, more than --max-bad-share of them refused in one line."""

import json
import shutil

import numpy as np
import soundfile as sf

from xlsr.cli.main import main


def _audio(src):
    (src / "spk1").mkdir(parents=True)
    (src / "spk2").mkdir()
    tone = lambda sr, s: (0.3 * np.sin(np.arange(int(sr * s)) / sr * 2 * np.pi * 220)).astype("float32")  # noqa: E731
    sf.write(src / "spk1" / "a.wav", tone(16000, 1.0), 16000)
    sf.write(src / "spk1" / "b.FLAC", tone(44100, 2.0), 44100, format="FLAC")
    sf.write(src / "spk2" / "a.ogg", tone(22050, 1.5), 22050, format="OGG", subtype="VORBIS")
    (src / "notes.txt").write_text("not audio, not listed")


def test_an_unlabeled_folder_becomes_a_pretraining_manifest(tmp_path, capsys):
    _audio(tmp_path / "src")
    assert main(["data", "import", "folder", str(tmp_path / "src"), "--lang", "sw", "--out", str(tmp_path / "d")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "d" / "sw" / "train.jsonl").read_text().splitlines()]
    assert [(r["id"], r["num_samples"], r["lang"], "text" in r) for r in lines] == [
        ("spk1/a", 16000, "sw", False), ("spk1/b", 32000, "sw", False), ("spk2/a", 24000, "sw", False)]
    assert "imported 3 files" in capsys.readouterr().out


def test_a_damaged_file_is_skipped_and_too_many_refused(tmp_path, capsys):
    _audio(tmp_path / "src")
    (tmp_path / "src" / "spk2" / "cut.wav").write_bytes(b"RIFF\x00\x00")
    args = ["data", "import", "folder", str(tmp_path / "src"), "--lang", "sw", "--out", str(tmp_path / "d")]
    assert main(args) == 2  # 1 of 4 > 0.05
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"xlsr: error: {tmp_path / 'src'}: 1 of 4 files (25.0%) could not be imported")
    assert not (tmp_path / "d" / "sw" / "train.jsonl").exists()
    assert main([*args, "--max-bad-share", "0.3"]) == 0
    assert len((tmp_path / "d" / "sw" / "train.jsonl").read_text().splitlines()) == 3
    assert "cut.wav" in (tmp_path / "d" / "import_skipped.txt").read_text()


def test_a_folder_without_audio_is_one_line(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.m4a").write_bytes(b"")
    assert main(["data", "import", "folder", str(tmp_path / "src"), "--lang", "sw", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xlsr: error: {tmp_path / 'src'}: no audio files (.wav, .flac, ") and "\n" not in err


def test_a_recording_in_a_format_xlsr_does_not_read_is_named(tmp_path, capsys):
    _audio(tmp_path / "src")
    (tmp_path / "src" / "spk2" / "phone.m4a").write_bytes(b"\0" * 100)
    args = ["data", "import", "folder", str(tmp_path / "src"), "--lang", "sw", "--out", str(tmp_path / "d")]
    assert main([*args, "--max-bad-share", "0.3"]) == 0
    assert len((tmp_path / "d" / "sw" / "train.jsonl").read_text().splitlines()) == 3
    skipped = (tmp_path / "d" / "import_skipped.txt").read_text()
    assert "phone.m4a: .m4a audio is not a format xlsr reads; convert it first" in skipped


def test_files_differing_by_suffix_alone_get_ids_of_their_own(tmp_path, capsys):
    _audio(tmp_path / "src")
    shutil.copyfile(tmp_path / "src" / "spk1" / "b.FLAC", tmp_path / "src" / "spk1" / "a.flac")
    assert main(["data", "import", "folder", str(tmp_path / "src"), "--lang", "sw", "--out", str(tmp_path / "d")]) == 0
    ids = [json.loads(x)["id"] for x in (tmp_path / "d" / "sw" / "train.jsonl").read_text().splitlines()]
    assert ids == ["spk1/a.flac", "spk1/a.wav", "spk1/b", "spk2/a"]
