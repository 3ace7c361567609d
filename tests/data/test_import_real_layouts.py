"""Importers against the layouts real downloads have: Common Voice tsvs (unquoted, a tab where none belongs, a
line that is no row, a release's other tsvs), fairseq manifests whose relative root is read from the working
folder, lhotse windows whose supervisions reach past them, FLEURS' language column of class ids."""

import io
import json
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from xlsr.cli.main import main
from xlsr.data.import_hf import import_hf
from xlsr.data.import_lhotse import import_lhotse
from xlsr.data.import_writer import SKIPPED_FILE
from xlsr.data.importers import import_common_voice, import_fairseq
from xlsr.data.manifest import read_manifest
from xlsr.errors import ManifestError, XlsrError

# Common Voice 7 to 16: accents before locale, so a tab inside a sentence moves the accent into the locale column
HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"


def _tone(n, rate):
    return 0.3 * np.sin(np.arange(n) * 2 * np.pi * 300 / rate)


def _release(tmp_path, clips=("a", "b", "c")):
    src = tmp_path / "cv-corpus-15.0-2023-09-08" / "de"
    (src / "clips").mkdir(parents=True)
    for name in clips:
        sf.write(src / "clips" / f"{name}.wav", _tone(16000, 16000), 16000)
    return src


def _row(clip, sentence, speaker="s1", accent="Hochdeutsch"):
    return f"{speaker}\t{clip}.wav\t{sentence}\t2\t0\ttwenties\tmale\t{accent}\tde\t\n"


def _skipped(out):
    return (out / SKIPPED_FILE).read_text(encoding="utf-8").splitlines()


def test_a_tab_inside_a_common_voice_sentence_skips_its_row_instead_of_cutting_it_or_moving_its_language(tmp_path):
    src = _release(tmp_path)
    # written unquoted: quotes are plain characters; Windows line endings, a BOM, a U+2028 inside a sentence
    rows = _row("a", 'Er sagte "Hallo" und\u2028ging.') + _row("b", "Guten\tTag") + _row("c", "Café")
    (src / "train.tsv").write_bytes(("\ufeff" + HEADER + rows).replace("\n", "\r\n").encode())
    summary = import_common_voice(src, tmp_path / "out", max_bad_share=0.5)
    assert summary.counts == {("de", "train"): 2}  # not one utterance in a language folder 'Hochdeutsch'
    assert [u.text for u in read_manifest(tmp_path / "out" / "de" / "train.jsonl")] == [
        'Er sagte "Hallo" und\u2028ging.', "Café"]
    assert _skipped(tmp_path / "out") == [
        f"{src / 'train.tsv'}:3: 11 columns, the header has 10 (a tab inside the sentence?)"]
    # with --lang the locale is not read: the row is still skipped, not imported as 'Guten'
    summary = import_common_voice(src, tmp_path / "lang", lang="de", max_bad_share=0.5)
    assert summary.skipped == 1
    assert "Guten" not in [u.text for u in read_manifest(tmp_path / "lang" / "de" / "train.jsonl")]


def test_a_common_voice_line_that_is_no_row_is_skipped_and_a_line_not_utf8_is_named(tmp_path):
    src = _release(tmp_path)
    # a line longer than the csv module's field limit (128 KiB) was a traceback
    (src / "train.tsv").write_text(HEADER + _row("a", "eins") + "x" * 200_000 + "\n" + _row("b", "zwei"),
                                   encoding="utf-8")
    summary = import_common_voice(src, tmp_path / "out", max_bad_share=0.5)
    assert summary.counts == {("de", "train"): 2}
    assert _skipped(tmp_path / "out") == [f"{src / 'train.tsv'}:3: too few columns (no path, sentence)"]
    (src / "train.tsv").write_bytes((HEADER + _row("a", "eins")).encode() + _row("b", "Stra\xdfe").encode("latin-1"))
    with pytest.raises(ManifestError, match=r"train\.tsv:3: not UTF-8 text"):
        import_common_voice(src, tmp_path / "bad")
    assert not (tmp_path / "bad" / "de").exists()


def test_a_common_voice_tsv_is_read_a_line_at_a_time(tmp_path):
    src = _release(tmp_path, clips=("a",))
    sentence = "Ein langer Satz aus dem Korpus, der viele Zeilen füllt. " * 300  # 17 kB a row
    tsv = src / "train.tsv"
    tsv.write_text(HEADER + _row("a", sentence) * 200, encoding="utf-8")  # 3.4 MB
    tracemalloc.start()
    try:
        summary = import_common_voice(src, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.counts == {("de", "train"): 200}
    assert peak < tsv.stat().st_size / 2  # read whole, its bytes, text and lines took 3 to 4 times its size


def test_common_voice_splits_name_the_release_tsvs_to_import(tmp_path, capsys):
    src = _release(tmp_path)
    (src / "train.tsv").write_text(HEADER + _row("a", "eins"), encoding="utf-8")
    (src / "validated.tsv").write_text(HEADER + _row("a", "eins") + _row("b", "zwei"), encoding="utf-8")
    (src / "other.tsv").write_text(HEADER + _row("c", "drei"), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["data", "import", "commonvoice", str(src), "--out", str(out), "--splits", "validated,other,validated"]
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "de").glob("*.jsonl")) == ["other.jsonl", "validated.jsonl"]
    assert [u.text for u in read_manifest(out / "de" / "validated.jsonl")] == ["eins", "zwei"]  # read once
    # a tsv named but not there is refused, not passed over
    with pytest.raises(XlsrError, match=r"de: no othr\.tsv \(found: other\.tsv, train\.tsv, validated\.tsv\)"):
        import_common_voice(src, tmp_path / "typo", splits=("validated", "othr"))
    assert not (tmp_path / "typo").exists()
    assert import_common_voice(src, tmp_path / "default").counts == {("de", "train"): 1}


def test_a_fairseq_root_relative_to_the_working_folder_is_read_as_fairseq_reads_it(tmp_path, monkeypatch):
    (tmp_path / "corpus" / "wav").mkdir(parents=True)
    sf.write(tmp_path / "corpus" / "wav" / "u1.flac", _tone(8000, 8000), 8000)
    (tmp_path / "manifests").mkdir()
    tsv = tmp_path / "manifests" / "train.tsv"
    monkeypatch.chdir(tmp_path)  # where fairseq was run from: the root is read from here
    for root, path in (("corpus/wav", "u1.flac"), (".", "corpus/wav/u1.flac")):  # "." is a folder beside it too
        tsv.write_text(f"{root}\n{path}\t8000\n")
        assert import_fairseq(tsv, tmp_path / "out", lang="en").counts == {("en", "train"): 1}
        utt = read_manifest(tmp_path / "out" / "en" / "train.jsonl")[0]
        assert (utt.audio, utt.num_samples) == (str(tmp_path / "corpus" / "wav" / "u1.flac"), 16000)
    # relative to the manifest still, where the root is there
    tsv.write_text("../corpus/wav\nu1.flac\t8000\n")
    assert import_fairseq(tsv, tmp_path / "out", lang="en").counts == {("en", "train"): 1}
    tsv.write_text("nowhere\nu1.flac\t8000\n")
    with pytest.raises(ManifestError, match=r"train\.tsv:1: audio root folder 'nowhere' does not exist \(looked for "
                                            r"beside the manifest and in the working folder"):
        import_fairseq(tsv, tmp_path / "out", lang="en")


def test_a_lhotse_cut_whose_supervision_reaches_past_it_is_skipped(tmp_path):
    sf.write(tmp_path / "talk.wav", _tone(6 * 16000, 16000), 16000)
    rec = Recording.from_file(tmp_path / "talk.wav", recording_id="talk")
    sups = [SupervisionSegment("one", "talk", start=1.0, duration=2.0, text="erste rede", language="de"),
            SupervisionSegment("two", "talk", start=4.0, duration=2.0005, text="zweite", language="de")]
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings([rec]),
                                 supervisions=SupervisionSet.from_segments(sups))
    # 2 s windows: 'one' spans the first two, 'two' lies in the third (its end 0.5 ms past it: rounding)
    manifest = tmp_path / "cuts.jsonl.gz"
    cuts.cut_into_windows(duration=2.0).to_file(manifest)
    summary = import_lhotse(manifest, tmp_path / "out", max_bad_share=0.9, show_progress=False)
    utts = read_manifest(tmp_path / "out" / "de" / "train.jsonl")
    assert [(u.id, u.text, u.num_samples) for u in utts] == [("talk-0-2", "zweite", 32000)]
    assert summary.skipped == 2
    assert _skipped(tmp_path / "out")[0] == (
        f"{manifest}: cut 1 'talk-0-0': supervision 'one' (1.000 to 3.000 s) reaches outside the cut (0 to 2.000 s), so "
        f"its text is not all in the cut's audio; cut at supervisions with lhotse first (trim_to_supervisions)")


def test_fleurs_lang_id_class_ids_are_read_as_the_language_codes_they_name(tmp_path):
    # FLEURS stores lang_id as a ClassLabel: class ids on disk, their names in the schema's `huggingface` metadata
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {"audio": {"sampling_rate": 16000, "_type": "Audio"}, "transcription": {"dtype": "string", "_type": "Value"},
                "lang_id": {"names": ["af_za", "am_et", "ar_eg"], "_type": "ClassLabel"}}
    schema = pa.schema([("audio", audio), ("transcription", pa.string()), ("lang_id", pa.int64())],
                       metadata={b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    wav = io.BytesIO()
    sf.write(wav, _tone(16000, 16000), 16000, format="WAV")
    rows = [{"audio": {"bytes": wav.getvalue(), "path": f"{n}.wav"}, "transcription": text, "lang_id": lang}
            for n, (text, lang) in enumerate([("een", 0), ("waahid", 2)])]
    (tmp_path / "fleurs" / "train").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "fleurs" / "train" / "0000.parquet")
    summary = import_hf(tmp_path / "fleurs", tmp_path / "out", text_column="transcription", lang_column="lang_id",
                        split_from_filename=True, show_progress=False)
    assert summary.counts == {("af-ZA", "train"): 1, ("ar-EG", "train"): 1} and summary.skipped == 0
    # class ids without their names are no language codes: refused before any row, not skipped row by row
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.remove_metadata()), tmp_path / "fleurs" / "train" /
                   "0000.parquet")
    with pytest.raises(XlsrError, match=r"0000\.parquet: language column 'lang_id' holds numbers, and the file names "
                                        r"no classes for them; pass --lang-column NAME or --lang CODE"):
        import_hf(tmp_path / "fleurs", tmp_path / "bare", text_column="transcription", lang_column="lang_id",
                  show_progress=False)


def test_splits_naming_no_tsv_is_refused(tmp_path, capsys):
    from xlsr.cli.main import main

    (tmp_path / "cv" / "clips").mkdir(parents=True)
    (tmp_path / "cv" / "train.tsv").write_text("client_id\tpath\tsentence\tlocale\n")
    assert main(["data", "import", "commonvoice", str(tmp_path / "cv"), "--out", str(tmp_path / "out"),
                 "--splits", " , "]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--splits ' , ': names no tsv" in err
    assert not (tmp_path / "out").exists()
