"""Which source wins when two could: a fairseq .wrd over its .ltr (words keep their case and punctuation, and a .ltr
beside a .wrd is not read at all), and a folder import's path relative to the folder over a file's bare name."""

import numpy as np
import soundfile as sf

from xlsr.data.importers import import_fairseq, import_folder
from xlsr.data.manifest import read_manifest


def _tone(n, rate=16000):
    return 0.3 * np.sin(np.arange(n) * 2 * np.pi * 300 / rate)


def test_words_are_taken_over_letters_and_the_letters_file_is_then_not_read(tmp_path):
    audio = tmp_path / "wavs"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"u{i}.flac", _tone(8000 + i), 16000)
    (tmp_path / "dev.tsv").write_text(f"{audio}\nu0.flac\t8000\nu1.flac\t8001\n")
    (tmp_path / "dev.wrd").write_text("Hello, World!\nBye.\n")
    (tmp_path / "dev.ltr").write_text("h e l l o | w o r l d |\n")  # stale: one line for two files, never read
    assert import_fairseq(tmp_path / "dev.tsv", tmp_path / "out", lang="en").counts == {("en", "dev"): 2}
    assert [u.text for u in read_manifest(tmp_path / "out" / "en" / "dev.jsonl")] == ["Hello, World!", "Bye."]


def test_a_key_that_is_a_relative_path_names_that_file_though_a_subfolder_holds_one_of_the_same_name(tmp_path):
    src = tmp_path / "audio"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "x.wav", _tone(8000), 16000)
    sf.write(src / "sub" / "x.wav", _tone(9600), 16000)
    (tmp_path / "t.txt").write_text("x.wav top\nsub/x.wav nested\n")
    summary = import_folder(src, tmp_path / "t.txt", tmp_path / "out", lang="en")
    assert summary.counts == {("en", "train"): 2} and summary.skipped == 0
    utts = read_manifest(tmp_path / "out" / "en" / "train.jsonl")
    assert [(u.text, u.audio, u.num_samples) for u in utts] == [
        ("top", str((src / "x.wav").resolve()), 8000), ("nested", str((src / "sub" / "x.wav").resolve()), 9600)]
