import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.audio import load_audio
from xlsr.data.import_writer import SKIPPED_FILE
from xlsr.data.importers import import_common_voice, import_fairseq, import_folder
from xlsr.data.languages import language_code
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
    summary = import_common_voice(src, tmp_path / "out", max_bad_share=0.3)
    assert summary.counts == {("es", "train"): 2, ("es", "test"): 1} and summary.skipped == 1
    assert (tmp_path / "out" / SKIPPED_FILE).read_text().startswith(f"{src / 'test.tsv'}:3: ")
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
    assert import_fairseq(tmp_path / "dev.tsv", tmp_path / "out", lang="en").counts == {("en", "dev"): 2}
    utts = read_manifest(tmp_path / "out" / "en" / "dev.jsonl")
    assert [(u.text, u.phones, u.num_samples) for u in utts] == [("hello world", "h ə l oʊ", 8000),
                                                                 ("bye", "b aɪ", 8001)]
    assert utts[1].audio == str((audio / "u1.flac").resolve())
    (tmp_path / "dev.wrd").write_text("hello world\n")
    with pytest.raises(ManifestError, match="dev.wrd: 1 lines but"):
        import_fairseq(tmp_path / "dev.tsv", tmp_path / "out", lang="en")
    (tmp_path / "bad.tsv").write_text(f"{audio}\nu0.flac\n")
    with pytest.raises(XlsrError, match="bad.tsv:2: expected 'relative/path<TAB>num_samples'"):
        import_fairseq(tmp_path / "bad.tsv", tmp_path / "out", lang="en")


def test_folder_with_transcripts(tmp_path):
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "one.wav", _tone(22050, 22050), 22050)
    sf.write(src / "two.ogg", _tone(16000, 16000), 16000, format="OGG", subtype="VORBIS")
    (src / "broken.wav").write_text("not audio")
    (tmp_path / "t.txt").write_text("one.wav\tfirst line\ntwo second line\nbroken broken\n")
    summary = import_folder(src, tmp_path / "t.txt", tmp_path / "out", lang="it", split="dev", max_bad_share=0.5)
    assert summary.counts == {("it", "dev"): 2} and summary.skipped == 1
    utts = read_manifest(tmp_path / "out" / "it" / "dev.jsonl")
    assert [(u.id, u.text, u.num_samples) for u in utts] == [("one", "first line", 16000), ("two", "second line", 16000)]
    (tmp_path / "t2.txt").write_text("three hello\n")
    with pytest.raises(XlsrError, match="1 of 1 utterances .* \\(first: .*t2.txt:1: no audio file 'three'"):
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


def _skipped(out):
    return (out / SKIPPED_FILE).read_text().splitlines()


def test_common_voice_bom_old_names_and_bad_rows_are_skipped(tmp_path):
    src = tmp_path / "cv"
    (src / "clips").mkdir(parents=True)
    for name in ("a", "b"):
        sf.write(src / "clips" / f"{name}.mp3", _tone(16000, 16000), 16000, format="MP3", subtype="MPEG_LAYER_III")
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    # a BOM before the header (spreadsheet exports), a path without .mp3 (older releases), a row cut short,
    # a row without its locale
    (src / "train.tsv").write_text("\ufeff" + header + "s1\ta\thola\t2\t0\t\t\t\tes\t\n"
                                   "s2\tb.mp3\tadiós\t2\t0\t\t\t\tes\t\ns3\n"
                                   "s4\tb.mp3\tsin\t2\t0\t\t\t\t\t\n", encoding="utf-8")
    summary = import_common_voice(src, tmp_path / "out", max_bad_share=0.5)
    utts = read_manifest(tmp_path / "out" / "es" / "train.jsonl")
    assert [(u.id, u.speaker, u.text) for u in utts] == [("a", "s1", "hola"), ("b", "s2", "adiós")]
    assert utts[0].audio == str((src / "clips" / "a.mp3").resolve()) and summary.skipped == 2
    tsv = src / "train.tsv"
    assert _skipped(tmp_path / "out") == [f"{tsv}:4: too few columns (no path, sentence)",
                                          f"{tsv}:5: no locale; pass --lang"]
    # with --lang the short row is still one skipped row, not a TypeError; over the cap: one line
    assert import_common_voice(src, tmp_path / "it", lang="it", max_bad_share=0.3).counts == {("it", "train"): 3}
    with pytest.raises(XlsrError, match=r"cv: 1 of 4 utterances \(25.0%\) could not be imported, more than "
                                        r"max_bad_share=0.05; no manifest written \(first: .*train.tsv:4: too few"):
        import_common_voice(src, tmp_path / "capped", lang="it")
    # a release without a locale column needs --lang: the whole file is refused, before any row
    (src / "train.tsv").write_text("client_id\tpath\tsentence\ns1\ta.mp3\thola\n")
    with pytest.raises(ManifestError, match=r"train.tsv:1: no locale column; pass --lang"):
        import_common_voice(src, tmp_path / "x")


def test_fairseq_lines_split_at_newline_only_and_bad_entries_skipped_with_their_labels(tmp_path):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i in range(3):
        sf.write(wavs / f"u{i}.flac", _tone(8000, 16000), 16000)
    # a missing file and a count with a superscript digit ('²'.isdigit() is True), each with its label line
    (tmp_path / "dev.tsv").write_text(f"{wavs}\r\nu0.flac\t8000\r\nGONE.flac\t8000\r\nu1.flac\t8²\r\nu2.flac\t8000\r\n")
    # U+2028, U+0085 and a form feed inside a transcript: fairseq splits at '\n' only (str.splitlines would not)
    (tmp_path / "dev.wrd").write_text("zero\r\ngone\r\nsuper\r\ntwo\u2028lines\x85in\x0cone\r\n", encoding="utf-8",
                                      newline="")
    summary = import_fairseq(tmp_path / "dev.tsv", tmp_path / "out", lang="en", max_bad_share=0.5)
    utts = read_manifest(tmp_path / "out" / "en" / "dev.jsonl")
    assert [(u.id, u.text) for u in utts] == [("u0", "zero"), ("u2", "two\u2028lines\x85in\x0cone")]
    tsv = tmp_path / "dev.tsv"
    assert summary.skipped == 2 and _skipped(tmp_path / "out") == [
        f"{tsv}:3: {(wavs / 'GONE.flac').resolve()}: no such audio file",
        f"{tsv}:4: expected 'relative/path<TAB>num_samples'"]
    with pytest.raises(XlsrError, match=r"dev.tsv: 2 of 4 utterances \(50.0%\) could not be imported"):
        import_fairseq(tmp_path / "dev.tsv", tmp_path / "capped", lang="en")
    assert not (tmp_path / "capped" / "en" / "dev.jsonl").exists()


def test_folder_keys_by_relative_path_ambiguous_names_and_missing_audio(tmp_path):
    src = tmp_path / "audio"
    for speaker, n in (("spk1", 8000), ("spk2", 24000)):
        (src / speaker).mkdir(parents=True)
        sf.write(src / speaker / "001.wav", _tone(n, 16000), 16000)
    sf.write(src / "spk2" / "002.wav", _tone(16000, 16000), 16000)
    (src / "dir.wav").mkdir()  # a folder named like audio is no audio file
    (tmp_path / "t.txt").write_text("\ufeff002 bom before the first key\n"  # a BOM: the first key is still '002'
                                    "001 which one\nspk1/001.wav from speaker one\nspk2/001 from speaker two\n"
                                    "u9 missing\ndir no file\n", encoding="utf-8")
    summary = import_folder(src, tmp_path / "t.txt", tmp_path / "out", lang="en", max_bad_share=0.5)
    utts = read_manifest(tmp_path / "out" / "en" / "train.jsonl")
    assert [(str(Path(u.audio).relative_to(src.resolve())), u.num_samples, u.text) for u in utts] == [
        ("spk2/002.wav", 16000, "bom before the first key"), ("spk1/001.wav", 8000, "from speaker one"),
        ("spk2/001.wav", 24000, "from speaker two")]
    assert [u.id for u in utts] == ["spk2/002", "spk1/001", "spk2/001"]  # unique: the path under SRC
    t = tmp_path / "t.txt"
    assert summary.skipped == 3 and _skipped(tmp_path / "out") == [
        f"{t}:2: '001' is ambiguous: spk1/001.wav, spk2/001.wav; use the path relative to {src}",
        f"{t}:5: no audio file 'u9' in {src}", f"{t}:6: no audio file 'dir' in {src}"]
    # one missing file is a skipped line, not the end of the run; max_bad_share decides whether to go on
    with pytest.raises(XlsrError, match=r"t.txt: 3 of 6 utterances \(50.0%\) could not be imported, more than "
                                        r"max_bad_share=0.05; no manifest written \(first: .*t.txt:2: '001' is"):
        import_folder(src, t, tmp_path / "capped", lang="en")


def test_a_recording_named_by_two_transcript_lines_is_imported_once(tmp_path):
    src = tmp_path / "audio"
    (src / "spk1").mkdir(parents=True)
    sf.write(src / "spk1" / "001.wav", _tone(8000, 16000), 16000)
    sf.write(src / "spk1" / "002.wav", _tone(4000, 16000), 16000)
    (tmp_path / "t.txt").write_text("001 first\n002 other\nspk1/001.wav second\n001 first\n", encoding="utf-8")
    summary = import_folder(src, tmp_path / "t.txt", tmp_path / "out", lang="en", max_bad_share=0.5)
    utts = read_manifest(tmp_path / "out" / "en" / "train.jsonl")
    assert [(u.id, u.text) for u in utts] == [("spk1/001", "first"), ("spk1/002", "other")]
    t = tmp_path / "t.txt"
    assert summary.skipped == 2 and _skipped(tmp_path / "out") == [
        f"{t}:3: spk1/001.wav already has a transcript (line 1)", f"{t}:4: spk1/001.wav already has a transcript (line 1)"]


def test_fairseq_lengths_come_from_the_files_at_16khz_not_from_the_listed_frames(tmp_path):
    # fairseq's wav2vec_manifest.py lists frames at each file's own rate: 2400 for 0.3 s of 8 kHz audio
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    sf.write(wavs / "a b.wav", _tone(2400, 8000), 8000)
    (wavs / "broken.wav").write_text("not audio")
    (tmp_path / "train.tsv").write_text(f"{wavs}\na b.wav\t2400\nbroken.wav\t2400\n")
    (tmp_path / "train.wrd").write_text("hello\nbroken\n")
    summary = import_fairseq(tmp_path / "train.tsv", tmp_path / "out", lang="en", max_bad_share=0.5)
    [utt] = read_manifest(tmp_path / "out" / "en" / "train.jsonl")
    assert (utt.num_samples, utt.text) == (4800, "hello") and len(load_audio(utt.audio)) == 4800
    [line] = _skipped(tmp_path / "out")
    assert summary.skipped == 1 and line.startswith(f"{tmp_path / 'train.tsv'}:3: {(wavs / 'broken.wav').resolve()}: "
                                                    f"not a readable audio file")


def test_folder_keys_match_decomposed_file_names(tmp_path):
    # macOS and many zips store 'café' decomposed (NFD); a transcript typed by hand has it composed (NFC)
    src = tmp_path / "audio"
    (src / "spk 1").mkdir(parents=True)
    nfd = unicodedata.normalize("NFD", "café")
    sf.write(src / "spk 1" / f"{nfd}.wav", _tone(8000, 16000), 16000)
    sf.write(src / "spk 1" / f"{nfd}2.wav", _tone(4000, 16000), 16000)
    (tmp_path / "t.txt").write_text("spk 1/café\tun café\ncafé2.wav\tdeux\n", encoding="utf-8")
    summary = import_folder(src, tmp_path / "t.txt", tmp_path / "out", lang="fr")
    utts = read_manifest(tmp_path / "out" / "fr" / "train.jsonl")
    assert summary.skipped == 0 and [(u.id, u.text, u.num_samples) for u in utts] == [
        ("spk 1/café", "un café", 8000), ("spk 1/café2", "deux", 4000)]
    assert Path(utts[0].audio).is_file() and Path(utts[0].audio).name == f"{nfd}.wav"  # read by its real name


@pytest.mark.parametrize("value, code", [("nan-tw", "nan-tw"), ("zh-CN", "zh-CN"), ("tok", "tok"), ("af_za", "af-ZA"),
                                         ("EN", "en"), ("eng", "en"), ("sv-SE", "sv-SE")])
def test_common_voice_locales_get_the_folder_the_common_voice_importer_gives(value, code, caplog):
    language_code.cache_clear()  # its warning comes with the first look-up only
    assert language_code(value) == code
    assert ("a code langcodes does not know" in caplog.text) == (value == "tok")


def test_a_common_voice_locale_names_the_same_folder_through_either_importer(tmp_path):
    src = tmp_path / "cv"
    (src / "clips").mkdir(parents=True)
    sf.write(src / "clips" / "a.mp3", _tone(16000, 16000), 16000, format="MP3", subtype="MPEG_LAYER_III")
    header = "client_id\tpath\tsentence\tlocale\n"
    for locale in ("nan-tw", "tok"):
        (src / "train.tsv").write_text(header + f"s1\ta.mp3\thola\t{locale}\n")
        import_common_voice(src, tmp_path / "out", splits=("train",))
        assert (tmp_path / "out" / language_code(locale) / "train.jsonl").is_file()


def test_a_transcript_line_without_a_label_is_skipped_and_leaves_its_file_to_a_later_line(tmp_path):
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "one.wav", _tone(16000, 16000), 16000)
    sf.write(src / "two.wav", _tone(16000, 16000), 16000)
    (tmp_path / "t.txt").write_text("one.wav\t \ntwo.wav second\none.wav first\n")  # a label lost, then given
    summary = import_folder(src, tmp_path / "t.txt", tmp_path / "out", lang="it", max_bad_share=0.5)
    assert summary.skipped == 1
    assert _skipped(tmp_path / "out") == [f"{tmp_path / 't.txt'}:1: no label after 'one.wav' (a line is <file> <label>)"]
    utts = read_manifest(tmp_path / "out" / "it" / "train.jsonl")
    assert sorted((u.id, u.text) for u in utts) == [("one", "first"), ("two", "second")]
