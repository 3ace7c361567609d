"""lhotse manifests -> our manifests: inputs built with lhotse itself, outputs checked against them."""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf
import soxr
from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from xlsr.data.audio import load_audio
from xlsr.data.import_lhotse import import_lhotse
from xlsr.data.import_writer import SKIPPED_FILE
from xlsr.data.languages import language_code
from xlsr.data.manifest import read_manifest
from xlsr.errors import XlsrError


def _noise(seconds, rate, channels=1, seed=0):
    x = np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels))
    return x[:, 0] if channels == 1 else x


def _sup(sid, rec, start, duration, text, language, speaker=None):
    return SupervisionSegment(id=sid, recording_id=rec.id, start=start, duration=duration, text=text,
                              language=language, speaker=speaker)


@pytest.fixture
def corpus(tmp_path):
    """Four recordings: 48 kHz (a segment is cut from it), 16 kHz mono, 22.05 kHz stereo, and one deleted."""
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "long.wav", _noise(2.0, 48000, seed=1), 48000)
    sf.write(src / "whole.flac", _noise(3.0, 16000, seed=2), 16000)
    sf.write(src / "stereo.wav", _noise(1.0, 22050, channels=2, seed=3), 22050)
    sf.write(src / "gone.wav", _noise(1.0, 16000), 16000)
    recs = {p.stem: Recording.from_file(p) for p in sorted(src.iterdir())}
    (src / "gone.wav").unlink()
    return src, recs


def test_cutset_segments_whole_files_and_bad_cuts(corpus, tmp_path):
    src, recs = corpus
    sups = [_sup("seg", recs["long"], 0.5, 1.0, "hola mundo", "Spanish", "ana"),  # lhotse's name, mapped to es
            _sup("st", recs["stereo"], 0.0, 1.0, "hello", "en", "bob"),
            _sup("g", recs["gone"], 0.0, 1.0, "weg", "de")]
    trimmed = CutSet.from_manifests(recordings=RecordingSet.from_recordings([recs["long"], recs["stereo"], recs["gone"]]),
                                    supervisions=SupervisionSet.from_segments(sups)).trim_to_supervisions()
    # a whole 16 kHz file with two supervisions: one utterance, the texts in time order
    whole = CutSet.from_manifests(recordings=RecordingSet.from_recordings([recs["whole"]]), supervisions=SupervisionSet
                                  .from_segments([_sup("w2", recs["whole"], 1.5, 1.5, "dos", "es", "eva"),
                                                  _sup("w1", recs["whole"], 0.0, 1.5, "uno", "es", "eva")]))
    no_recording = MonoCut(id="orphan", start=0.0, duration=1.0, channel=0, supervisions=[], recording=None)
    cuts = tmp_path / "cuts.jsonl.gz"
    CutSet.from_cuts([*trimmed, *whole, no_recording]).to_file(cuts)

    summary = import_lhotse(cuts, tmp_path / "out", max_bad_share=0.4, show_progress=False)

    es = read_manifest(tmp_path / "out" / "es" / "train.jsonl")
    assert [(u.id, u.text, u.speaker, u.num_samples) for u in es] == [("seg", "hola mundo", "ana", 16000),
                                                                      (whole[0].id, "uno dos", "eva", 48000)]
    # the segment: 0.5-1.5 s of the 48 kHz file, stored as 16 kHz FLAC; the whole file: referenced where it lies
    assert es[0].audio == str(tmp_path / "out" / "es" / "audio" / "train" / "0000" / "seg.flac")
    # written relative to the manifest, as `xlsr synth` writes its corpus: the folder can move
    assert '"audio": "audio/train/0000/seg.flac"' in (tmp_path / "out" / "es" / "train.jsonl").read_text()
    segment, reference = load_audio(es[0].audio), load_audio(src / "long.wav")[8000:24000]
    assert np.abs(segment - reference)[200:-200].max() < 2e-3  # soxr edges aside; FLAC is 16-bit
    assert es[1].audio == str((src / "whole.flac").resolve())
    en = read_manifest(tmp_path / "out" / "en" / "train.jsonl")
    # one channel of the stereo file (the supervision's), as lhotse cuts it
    assert [(u.text, u.num_samples) for u in en] == [("hello", 16000)]
    left = load_audio(tmp_path / "out" / "en" / "audio" / "train" / "0000" / "st.flac")
    assert np.abs(left - _resampled_left(src / "stereo.wav"))[200:-200].max() < 2e-3
    assert summary.skipped == 2 and summary.audio_written == 2
    skipped = (tmp_path / "out" / SKIPPED_FILE).read_text().splitlines()
    assert skipped[0].startswith(f"{cuts}: cut 3 'g': recording 'gone': no such file")
    assert skipped[1] == f"{cuts}: cut 5 'orphan': no recording"
    assert "es/train 2 (4.0 s)" in summary.line() and "2 skipped" in summary.line()

    # 2 bad cuts of 5 are over the default cap: one line, and no manifest written
    with pytest.raises(XlsrError, match=r"cuts.jsonl.gz: 2 of 5 cuts \(40.0%\) could not be imported, more than "
                                        r"max_bad_share=0.05; no manifest written"):
        import_lhotse(cuts, tmp_path / "capped", show_progress=False)
    assert not list((tmp_path / "capped").glob("*/*.jsonl")) and not list((tmp_path / "capped").glob("*/.*"))


def _resampled_left(path):
    data, rate = sf.read(path, dtype="float32")
    return soxr.resample(data[:, 0], rate, 16000)


def test_recordings_with_supervisions_one_utterance_each(corpus, tmp_path):
    _, recs = corpus
    rec = RecordingSet.from_recordings([recs["whole"], recs["long"]])
    rec.to_file(tmp_path / "rec.jsonl.gz")
    SupervisionSet.from_segments([_sup("a", recs["whole"], 0.0, 1.0, "eins", "deu"),
                                  _sup("b", recs["whole"], 1.0, 2.0, "zwei", "German")]).to_file(tmp_path / "sup.jsonl.gz")
    summary = import_lhotse([tmp_path / "rec.jsonl.gz", tmp_path / "sup.jsonl.gz"], tmp_path / "out", split="dev",
                            show_progress=False)
    utts = read_manifest(tmp_path / "out" / "de" / "dev.jsonl")
    assert [(u.id, u.text, u.num_samples) for u in utts] == [("a", "eins", 16000), ("b", "zwei", 32000)]
    assert summary.skipped == 0  # the unsupervised recording is no utterance, not a bad one
    # recordings alone: untranscribed audio for pretraining, whose language the user gives
    import_lhotse(tmp_path / "rec.jsonl.gz", tmp_path / "pt", lang="xx", show_progress=False)
    utts = read_manifest(tmp_path / "pt" / "xx" / "train.jsonl")
    ids = {c.recording_id: c.id for c in CutSet.from_manifests(recordings=rec)}  # lhotse names the cuts
    assert sorted((u.id, u.text, u.num_samples) for u in utts) == [(ids["long"], None, 32000),
                                                                   (ids["whole"], None, 48000)]
    with pytest.raises(XlsrError, match=rf"2 of 2 cuts .* \(first: .*cut 1 '{ids['whole']}': no language in its "
                                        r"supervisions; pass --lang"):
        import_lhotse(tmp_path / "rec.jsonl.gz", tmp_path / "nolang", show_progress=False)


def test_files_that_are_no_lhotse_manifests_are_one_line(corpus, tmp_path):
    _, recs = corpus
    with pytest.raises(XlsrError, match="nowhere.jsonl.gz: no such lhotse manifest"):
        import_lhotse(tmp_path / "nowhere.jsonl.gz", tmp_path / "out")
    bad = tmp_path / "notes.jsonl"
    bad.write_text('{"hello": 1}\n')
    with pytest.raises(XlsrError, match=r"^.*notes.jsonl: not a lhotse manifest \("):
        import_lhotse(bad, tmp_path / "out")
    RecordingSet.from_recordings([recs["whole"]]).to_file(tmp_path / "r1.jsonl.gz")
    with pytest.raises(XlsrError, match=r"expected one CutSet, or a RecordingSet .*r1.jsonl.gz \(RecordingSet\), "
                                        r".*r1.jsonl.gz \(RecordingSet\)"):
        import_lhotse([tmp_path / "r1.jsonl.gz"] * 2, tmp_path / "out")
    # a gzipped manifest cut short cannot be read past the break: one line naming it
    CutSet.from_manifests(recordings=RecordingSet.from_recordings([recs["whole"]])).to_file(tmp_path / "c.jsonl.gz")
    data = (tmp_path / "c.jsonl.gz").read_bytes()
    (tmp_path / "c.jsonl.gz").write_bytes(data[:len(data) // 2])
    with pytest.raises(XlsrError, match=r"c.jsonl.gz: unreadable after line 0 \(EOFError"):
        import_lhotse(tmp_path / "c.jsonl.gz", tmp_path / "out", lang="de", show_progress=False)
    assert not (tmp_path / "out" / "de").exists()
    with gzip.open(tmp_path / "empty.jsonl.gz", "wt"):
        pass
    with pytest.raises(XlsrError, match="empty.jsonl.gz: empty lhotse manifest"):
        import_lhotse(tmp_path / "empty.jsonl.gz", tmp_path / "out")


def _break(path, number, change):
    """`path` (JSONL) with its line `number` (from 1) replaced by change(line)."""
    lines = path.read_text().splitlines()
    lines[number - 1] = change(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


def _without(field):
    def change(line):
        record = json.loads(line)
        del record[field]
        return json.dumps(record)
    return change


def test_broken_manifest_lines_are_skipped_and_the_lines_after_them_read(corpus, tmp_path):
    src, recs = corpus
    for i in range(8):
        sf.write(src / f"r{i}.wav", _noise(0.5, 16000, seed=i), 16000)
    more = [Recording.from_file(src / f"r{i}.wav") for i in range(8)]
    sups = [_sup(f"s{i}", rec, 0.0, 0.5, f"word {i}", "de") for i, rec in enumerate(more)]
    CutSet.from_manifests(recordings=RecordingSet.from_recordings(more),
                          supervisions=SupervisionSet.from_segments(sups)).to_file(tmp_path / "cuts.jsonl")
    _break(tmp_path / "cuts.jsonl", 3, lambda line: line[:40])  # a partial copy: cut off mid-line
    _break(tmp_path / "cuts.jsonl", 6, _without("start"))  # valid JSON, a field missing
    summary = import_lhotse(tmp_path / "cuts.jsonl", tmp_path / "out", max_bad_share=0.3, show_progress=False)
    assert [u.text for u in read_manifest(tmp_path / "out" / "de" / "train.jsonl")] == [
        f"word {i}" for i in (0, 1, 3, 4, 6, 7)]
    skipped = (tmp_path / "out" / SKIPPED_FILE).read_text().splitlines()
    assert summary.skipped == 2 and skipped[0].startswith(f"{tmp_path / 'cuts.jsonl'}: cut 3: not JSON (")
    assert skipped[1].startswith(f"{tmp_path / 'cuts.jsonl'}: cut 6: not a lhotse item (TypeError: ")
    with pytest.raises(XlsrError, match=r"cuts.jsonl: 2 of 8 cuts \(25.0%\) could not be imported"):
        import_lhotse(tmp_path / "cuts.jsonl", tmp_path / "capped", show_progress=False)

    # recordings and supervisions: a broken line of either is one bad item; the first line may be the broken one
    RecordingSet.from_recordings(more).to_file(tmp_path / "rec.jsonl")
    SupervisionSet.from_segments(sups).to_file(tmp_path / "sup.jsonl")
    _break(tmp_path / "rec.jsonl", 1, lambda line: line[:40])
    _break(tmp_path / "rec.jsonl", 5, _without("sampling_rate"))
    _break(tmp_path / "sup.jsonl", 8, _without("recording_id"))
    summary = import_lhotse([tmp_path / "rec.jsonl", tmp_path / "sup.jsonl"], tmp_path / "pair", max_bad_share=0.5,
                            show_progress=False)
    assert [u.text for u in read_manifest(tmp_path / "pair" / "de" / "train.jsonl")] == [
        f"word {i}" for i in (1, 2, 3, 5, 6)]
    skipped = (tmp_path / "pair" / SKIPPED_FILE).read_text().splitlines()
    assert summary.skipped == 3 and [line.split(": not")[0] for line in skipped] == [
        f"{tmp_path / 'rec.jsonl'}: line 1", f"{tmp_path / 'rec.jsonl'}: line 5", f"{tmp_path / 'sup.jsonl'}: line 8"]
    assert "Recording.__init__() missing 1 required positional argument: 'sampling_rate'" in skipped[1]


@pytest.mark.parametrize("value, code", [("en", "en"), ("EN", "en"), ("eng", "en"), ("af_za", "af-ZA"),
                                         ("zh-CN", "zh-CN"), ("english", "en"), ("German", "de"),
                                         ("Cantonese", "yue"), ("Tagalog", "tl")])
def test_language_codes_from_tags_and_names(value, code):
    assert language_code(value) == code


def test_an_unknown_language_is_one_line():
    with pytest.raises(XlsrError, match="language 'qqqq' is neither a language code nor a known language name"):
        language_code("qqqq")
