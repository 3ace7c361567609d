import numpy as np
import pytest
import soundfile as sf

from xlsr.data.importers import import_common_voice, import_fairseq, import_folder
from xlsr.data.manifest import read_manifest
from xlsr.errors import ManifestError, XlsrError


def _tone(n, rate):
    return 0.3 * np.sin(np.arange(n) * 2 * np.pi * 300 / rate)


def test_common_voice_mp3(tmp_path):
    src = tmp_path / "cv"
    (src / "clips").mkdir(parents=True)
    for name in ("a", "b", "c"):
        sf.write(src / "clips" / f"{name}.mp3", _tone(48000, 48000), 48000, format="MP3",
                 subtype="MPEG_LAYER_III")
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    (src / "train.tsv").write_text(header + "spk1\ta.mp3\tHola, mundo.\t2\t0\t\t\t\tes\t\n"
                                   "spk2\tb.mp3\tBuenos días\t2\t0\t\t\t\tes\t\n")
    (src / "test.tsv").write_text(header + "spk3\tc.mp3\t\"Adiós\"\t2\t0\t\t\t\tes\t\n"
                                  "spk4\tmissing.mp3\tnada\t2\t0\t\t\t\tes\t\n")
    counts = import_common_voice(src, tmp_path / "out")
    assert counts == {"train": 2, "test": 1}
    train = read_manifest(tmp_path / "out" / "es" / "train.jsonl")
    assert [u.speaker for u in train] == ["spk1", "spk2"] and train[0].text == "Hola, mundo."
    assert abs(train[0].num_samples - 16000) < 800  # 1 s of 48 kHz mp3 at 16 kHz, give or take codec padding
    assert read_manifest(tmp_path / "out" / "es" / "test.jsonl")[0].text == '"Adiós"'
    with pytest.raises(XlsrError, match="no clips/"):
        import_common_voice(tmp_path / "out", tmp_path / "x")


def test_fairseq_manifest_with_labels(tmp_path):
    audio = tmp_path / "wavs"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"u{i}.flac", _tone(8000 + i, 16000), 16000)
    (tmp_path / "dev.tsv").write_text(f"{audio}\nu0.flac\t8000\nu1.flac\t8001\n")
    (tmp_path / "dev.ltr").write_text("h e l l o | w o r l d |\nb y e |\n")
    (tmp_path / "dev.phn").write_text("h ə l oʊ\nb aɪ\n")
    assert import_fairseq(tmp_path / "dev.tsv", tmp_path / "out", lang="en") == 2
    utts = read_manifest(tmp_path / "out" / "en" / "dev.jsonl")
    assert [(u.text, u.phones, u.num_samples) for u in utts] == [("hello world", "h ə l oʊ", 8000),
                                                                 ("bye", "b aɪ", 8001)]
    assert utts[1].audio == str((audio / "u1.flac").resolve())
    (tmp_path / "dev.wrd").write_text("hello world\n")
    with pytest.raises(ManifestError, match="dev.wrd: 1 lines but"):
        import_fairseq(tmp_path / "dev.tsv", tmp_path / "out", lang="en")
    (tmp_path / "bad.tsv").write_text(f"{audio}\nu0.flac\n")
    with pytest.raises(ManifestError, match="bad.tsv:2"):
        import_fairseq(tmp_path / "bad.tsv", tmp_path / "out", lang="en")


def test_folder_with_transcripts(tmp_path):
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "one.wav", _tone(22050, 22050), 22050)
    sf.write(src / "two.ogg", _tone(16000, 16000), 16000, format="OGG", subtype="VORBIS")
    (src / "broken.wav").write_text("not audio")
    (tmp_path / "t.txt").write_text("one.wav\tfirst line\ntwo second line\nbroken broken\n")
    assert import_folder(src, tmp_path / "t.txt", tmp_path / "out", lang="it", split="dev") == 2
    utts = read_manifest(tmp_path / "out" / "it" / "dev.jsonl")
    assert [(u.id, u.text, u.num_samples) for u in utts] == [("one", "first line", 16000), ("two", "second line", 16000)]
    (tmp_path / "t2.txt").write_text("three hello\n")
    with pytest.raises(ManifestError, match="t2.txt:1: no audio file 'three'"):
        import_folder(src, tmp_path / "t2.txt", tmp_path / "out", lang="it")


def test_files_that_are_not_manifests_are_one_line_errors(tmp_path):
    binary = tmp_path / "model.tsv"
    binary.write_bytes(b"\x80\x04\x95 not text \xff\xfe")
    with pytest.raises(ManifestError, match="model.tsv: not UTF-8 text"):
        import_fairseq(binary, tmp_path / "out", lang="es")
    with pytest.raises(ManifestError, match="model.tsv: not UTF-8 text"):
        import_folder(tmp_path, binary, tmp_path / "out", lang="es")
    # a text file that is no fairseq manifest: its first line is no folder
    (tmp_path / "notes.tsv").write_text("hola mundo\n")
    with pytest.raises(ManifestError, match="notes.tsv:1: audio root folder 'hola mundo' does not exist"):
        import_fairseq(tmp_path / "notes.tsv", tmp_path / "out", lang="es")
    (tmp_path / "empty.tsv").write_text(f"{tmp_path}\n")
    with pytest.raises(ManifestError, match="empty.tsv: no 'relative/path<TAB>num_samples' lines"):
        import_fairseq(tmp_path / "empty.tsv", tmp_path / "out", lang="es")
    assert not (tmp_path / "out").exists()
