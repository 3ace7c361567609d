"""Hugging Face datasets on disk -> our manifests: Parquet and save_to_disk Arrow files written with pyarrow in
the schema the Hub uses (Audio = struct<bytes: binary, path: string>), with 48 kHz FLAC and WAV bytes."""

import io
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import soxr

from xlsr.cli.main import main
from xlsr.data import import_hf as import_hf_module
from xlsr.data.audio import load_audio
from xlsr.data.import_hf import import_hf
from xlsr.data.import_writer import SKIPPED_FILE
from xlsr.data.manifest import read_manifest
from xlsr.errors import XlsrError

AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
# what `datasets` stores in a Hub parquet file's schema metadata; we do not need it, but real files carry it
HF_META = {b"huggingface": json.dumps({"info": {"features": {"audio": {"_type": "Audio", "sampling_rate": 48000}}}})
           .encode()}


def _noise(seconds, rate=48000, seed=0):
    return np.random.default_rng(seed).uniform(-0.4, 0.4, int(seconds * rate))


def _encoded(x, fmt, rate=48000):
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format=fmt)
    return buffer.getvalue()


def _cv_table(clips, sentences, locales, clients):
    """Common Voice's columns as the Hub's parquet conversion has them."""
    schema = pa.schema([("client_id", pa.string()), ("path", pa.string()), ("audio", AUDIO),
                        ("sentence", pa.string()), ("locale", pa.string())], metadata=HF_META)
    audio = [{"bytes": data, "path": name} for name, data in clips]
    return pa.table({"client_id": clients, "path": [name for name, _ in clips], "audio": audio,
                     "sentence": sentences, "locale": locales}, schema=schema)


def test_hub_parquet_files_with_embedded_48k_audio(tmp_path):
    a, b, c = _noise(1.0, seed=1), _noise(0.5, seed=2), _noise(0.75, seed=3)
    train = _cv_table([("cv_es_1.mp3", _encoded(a, "FLAC")), ("cv_es_2.mp3", _encoded(b, "WAV")),
                       ("cv_es_3.mp3", b"ID3 not really an mp3"), ("cv_es_1.mp3", _encoded(c, "FLAC"))],
                      ["Hola.", " Buenos días ", "roto", "otra vez"], ["es", "es", "es", "es"], ["s1", "s2", "s3", None])
    src = tmp_path / "cv" / "es"
    src.mkdir(parents=True)
    pq.write_table(train, src / "train-00000-of-00001.parquet", row_group_size=2)
    pq.write_table(_cv_table([("cv_ca_1.mp3", _encoded(b, "FLAC"))], ["Bon dia"], ["ca"], ["s9"]),
                   src / "validation-00000-of-00001.parquet")

    summary = import_hf(tmp_path / "cv", tmp_path / "out", split_from_filename=True, max_bad_share=0.3,
                        show_progress=False)

    es = read_manifest(tmp_path / "out" / "es" / "train.jsonl")
    # the row's audio path names the utterance; a second row with the same name gets a suffix
    assert [(u.id, u.text, u.speaker, u.num_samples) for u in es] == [
        ("cv_es_1", "Hola.", "s1", 16000), ("cv_es_2", "Buenos días", "s2", 8000), ("cv_es_1-2", "otra vez", "unknown", 12000)]
    for utt, original in zip(es, (a, b, c)):
        assert utt.audio.endswith(".flac") and sf.info(utt.audio).samplerate == 16000
        expected = soxr.resample(original.astype(np.float32), 48000, 16000)
        assert np.abs(load_audio(utt.audio) - expected).max() < 1e-3  # 16-bit FLAC of the resampled row
    dev = read_manifest(tmp_path / "out" / "ca" / "dev.jsonl")  # validation -> our dev
    assert [(u.id, u.text, u.num_samples) for u in dev] == [("cv_ca_1", "Bon dia", 8000)]
    assert summary.skipped == 1 and summary.audio_written == 4
    assert sorted(p.name for p in (tmp_path / "out" / "es").iterdir()) == ["audio", "train.jsonl"]  # no spool left
    assert (tmp_path / "out" / SKIPPED_FILE).read_text() == (
        f"{src / 'train-00000-of-00001.parquet'}:row 2: not a readable audio file (Format not recognised.)\n")

    # one undecodable row of 5 is over a cap of 0.1: one line, no manifest
    with pytest.raises(XlsrError, match=r"1 of 5 rows \(20.0%\) could not be imported, more than max_bad_share=0.1"):
        import_hf(tmp_path / "cv", tmp_path / "capped", max_bad_share=0.1, show_progress=False)
    assert not list((tmp_path / "capped").glob("*/*.jsonl")) and not list((tmp_path / "capped").glob("*/.*"))


def _damage_row_group(path, group):
    """Overwrite the first page header of `path`'s row group `group`: the footer stays, that group is unreadable."""
    column = pq.ParquetFile(path).metadata.row_group(group).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def test_a_damaged_shard_is_skipped_and_counted_against_max_bad_share(tmp_path, monkeypatch):
    src = tmp_path / "cv"
    src.mkdir()
    for k in range(4):
        clips = [(f"f{k}_{i}.mp3", _encoded(_noise(0.1, seed=i), "FLAC")) for i in range(5)]
        pq.write_table(_cv_table(clips, ["hola"] * 5, ["es"] * 5, ["c"] * 5), src / f"train-0000{k}-of-00004.parquet",
                       row_group_size=1)
    # shard 3: cut in the middle, footer lost (its row count unknown): the whole file is one bad item
    cut = src / "train-00003-of-00004.parquet"
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    # shard 1: a damaged page in its 4th row group; read 2 rows a batch, rows 0-1 are read, 2-4 lost
    monkeypatch.setattr(import_hf_module, "BATCH_ROWS", 2)
    _damage_row_group(src / "train-00001-of-00004.parquet", 3)
    summary = import_hf(src, tmp_path / "out", max_bad_share=0.3, show_progress=False)
    ids = [u.id for u in read_manifest(tmp_path / "out" / "es" / "train.jsonl")]
    assert ids == [f"f0_{i}" for i in range(5)] + ["f1_0", "f1_1"] + [f"f2_{i}" for i in range(5)]
    skipped = (tmp_path / "out" / SKIPPED_FILE).read_text().splitlines()
    assert summary.skipped == 4 and len(skipped) == 2
    assert skipped[0].startswith(f"{cut}: not a readable parquet file (") and skipped[0].endswith("; the whole file skipped")
    assert skipped[1].startswith(f"{src / 'train-00001-of-00004.parquet'}:row 2: unreadable from here on (")
    assert skipped[1].endswith("; 3 rows skipped")
    with pytest.raises(XlsrError, match=r"cv: 4 of 16 rows \(25.0%\) could not be imported, more than max_bad_share="
                                        r"0.05; no manifest written \(first: .*train-00003-of-00004.parquet: not a "):
        import_hf(src, tmp_path / "capped", show_progress=False)


def _save_to_disk(folder, split, table):
    """The layout `DatasetDict.save_to_disk` writes: dataset_dict.json, then per split an Arrow stream + json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": [split]}))
    (folder / split).mkdir()
    with pa.OSFile(str(folder / split / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=2)
    (folder / split / "dataset_info.json").write_text(json.dumps({"features": {}}))
    (folder / split / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}],
                                                           "_split": split}))


def test_save_to_disk_folder_fleurs_columns(tmp_path):
    # FLEURS' columns: lang_id 'af_za', 'transcription', the audio path a file name, no speaker column
    x, y, z = _noise(0.5, seed=4), _noise(1.5, seed=5), _noise(0.25, seed=6)
    table = pa.table({"id": [1, 2, 3],
                      "audio": pa.array([{"bytes": _encoded(x, "WAV"), "path": "1001.wav"},
                                         {"bytes": _encoded(y, "FLAC"), "path": "1002.wav"},
                                         {"bytes": _encoded(z, "WAV"), "path": "1003.wav"}], AUDIO),
                      "transcription": ["een", "twee", "drie"], "lang_id": ["af_za", "af_za", "af_za"]})
    _save_to_disk(tmp_path / "fleurs", "test", table)
    summary = import_hf(tmp_path / "fleurs", tmp_path / "out", text_column="transcription", lang_column="lang_id",
                        split_from_filename=True, show_progress=False)
    utts = read_manifest(tmp_path / "out" / "af-ZA" / "test.jsonl")
    assert [(u.id, u.text, u.num_samples, u.speaker) for u in utts] == [
        ("1001", "een", 8000, "unknown"), ("1002", "twee", 24000, "unknown"), ("1003", "drie", 4000, "unknown")]
    assert np.abs(load_audio(utts[1].audio) - soxr.resample(y.astype(np.float32), 48000, 16000)).max() < 1e-3
    assert summary.skipped == 0 and "af-ZA/test 3 (2.2 s)" in summary.line()
    # audio only (pretraining), language and split from the user
    import_hf(tmp_path / "fleurs", tmp_path / "pt", text_column="", lang="af", show_progress=False)
    assert [u.text for u in read_manifest(tmp_path / "pt" / "af" / "train.jsonl")] == [None, None, None]
    # an Arrow file in the random-access format (not what save_to_disk writes) reads the same
    with pa.OSFile(str(tmp_path / "rows.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=2)
    import_hf(tmp_path / "rows.arrow", tmp_path / "file", text_column="transcription", lang="af", show_progress=False)
    assert [(u.id, u.num_samples) for u in read_manifest(tmp_path / "file" / "af" / "train.jsonl")] == [
        (u.id, u.num_samples) for u in utts]


def test_missing_columns_are_refused_before_any_row(tmp_path):
    src = tmp_path / "ds"
    src.mkdir()
    good = _cv_table([("a.mp3", _encoded(_noise(0.2), "WAV"))], ["uno"], ["es"], ["s"])
    pq.write_table(good, src / "train-00000-of-00002.parquet")
    pq.write_table(good.drop_columns(["audio"]), src / "train-00001-of-00002.parquet")
    bad = src / "train-00001-of-00002.parquet"
    with pytest.raises(XlsrError) as info:
        import_hf(src, tmp_path / "out", show_progress=False)
    assert str(info.value) == (f"{bad}: no audio column 'audio' (columns: client_id, path, sentence, locale); "
                               f"pass --audio-column")
    assert not (tmp_path / "out").exists()  # the good file before it was not imported half
    bad.unlink()
    with pytest.raises(XlsrError, match=r"no text column 'text' \(columns: client_id, path, audio, sentence, locale\); "
                                        r"pass --text-column NAME, or --text-column '' for audio only"):
        import_hf(src, tmp_path / "out", text_column="text")
    with pytest.raises(XlsrError, match=r"no language column 'lang' .*; pass --lang-column NAME or --lang CODE"):
        import_hf(src, tmp_path / "out", lang_column="lang")
    with pytest.raises(XlsrError, match=r"column 'sentence' is string, not an Audio feature's struct<bytes, path>"):
        import_hf(src, tmp_path / "out", audio_column="sentence")
    unnamed = (src / "train-00000-of-00002.parquet").rename(src / "part-0.parquet")
    with pytest.raises(XlsrError, match=r"part-0.parquet: no split name \(train, validation, .*\) in its name or "
                                        r"folders; pass --split instead of --split-from-filename"):
        import_hf(unnamed, tmp_path / "out", split_from_filename=True)
    (tmp_path / "notes.parquet").write_text("not parquet")
    with pytest.raises(XlsrError, match=r"notes.parquet: not a readable parquet file"):
        import_hf(tmp_path / "notes.parquet", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(XlsrError, match=r"empty: no .parquet or .arrow files"):
        import_hf(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(XlsrError, match=r"nowhere: no such file or folder"):
        import_hf(tmp_path / "nowhere", tmp_path / "out")


def test_cli_import_hf_and_lhotse_one_line_errors(tmp_path, capsys, monkeypatch):
    src = tmp_path / "ds"
    src.mkdir()
    pq.write_table(_cv_table([("a.mp3", _encoded(_noise(0.2), "WAV"))], ["uno"], ["es"], ["s"]), src / "x.parquet")
    assert main(["data", "import", "hf", "--src", str(src), "--out", str(tmp_path / "out"), "--split", "dev"]) == 0
    assert capsys.readouterr().out.startswith(f"imported 1 rows from {src} into {tmp_path / 'out'}: es/dev 1 (0.2 s)")
    assert main(["data", "import", "hf", "--src", str(src), "--out", str(tmp_path / "o"), "--audio-column", "wav"]) == 2
    assert capsys.readouterr().err == (f"xlsr: error: {src / 'x.parquet'}: no audio column 'wav' (columns: client_id, "
                                       f"path, audio, sentence, locale); pass --audio-column\n")
    assert main(["data", "import", "lhotse", "--src", str(src / "x.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(f"xlsr: error: {src / 'x.parquet'}: not a lhotse manifest (")
    # without the optional extra: one line saying how to install it
    monkeypatch.delitem(sys.modules, "xlsr.data.import_lhotse", raising=False)
    monkeypatch.setitem(sys.modules, "lhotse", None)
    assert main(["data", "import", "lhotse", "--src", "cuts.jsonl.gz", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "xlsr: error: xlsr data import lhotse needs lhotse: pip install 'xlsr[import]'\n"


def test_qualified_split_names_stay_apart_as_the_dataset_keeps_them(tmp_path):
    # LibriSpeech's layouts on the Hub: dotted split names in file names (an uploader's `data/test.clean-...`), and
    # the parquet converter's `<config>/<split>/` folders, with `partial-` for a split it converted in part
    src = tmp_path / "librispeech"
    layout = {"data/test.clean-00000-of-00001-2a727bd4.parquet": "c", "data/test.other-00000-of-00001-9f.parquet": "o",
              "all/train.clean.100/0000.parquet": "t1", "other/partial-train.500/0000.parquet": "t5",
              "all/validation.clean/0000.parquet": "v", "clean/test/0000.parquet": "plain"}
    for i, (name, text) in enumerate(layout.items()):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_cv_table([(f"{text}.flac", _encoded(_noise(0.2, seed=i), "FLAC"))], [text], ["en"], ["s"]),
                       src / name)
    import_hf(src, tmp_path / "out", split_from_filename=True, show_progress=False)
    got = {p.name: [u.text for u in read_manifest(p)] for p in (tmp_path / "out" / "en").glob("*.jsonl")}
    # test.clean and test.other were one `test`; train.500 under other/ went to Common Voice's `other` split
    assert got == {"test.clean.jsonl": ["c"], "test.other.jsonl": ["o"], "train.clean.100.jsonl": ["t1"],
                   "train.500.jsonl": ["t5"], "dev.clean.jsonl": ["v"], "test.jsonl": ["plain"]}
