from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.data import import_writer
from xlsr.data.import_writer import ImportWriter, safe_name
from xlsr.data.manifest import Utterance, read_manifest
from xlsr.errors import XlsrError


def test_audio_folders_names_and_clipping(tmp_path, monkeypatch):
    monkeypatch.setattr(import_writer, "FILES_PER_FOLDER", 2)
    x = np.full(1600, 1.2, np.float32)  # above full scale, as a resampler's overshoot can be
    with ImportWriter(tmp_path, source="src", unit="rows") as writer:
        for _ in range(5):
            name = writer.unique_id("a/b:c", "es", "train")
            path = writer.write_audio(x, name, "es", "train")
            writer.add(Utterance(audio=str(path), num_samples=len(x), lang="es", id=name), "train")
        summary = writer.finish()
    utts = read_manifest(tmp_path / "es" / "train.jsonl")
    # names, the manifest's ids, are unique in the split: a full folder's are kept as hashes (8 bytes a row); they
    # were unique within a folder only, the same id in every folder
    assert [str(Path(u.audio).relative_to(tmp_path / "es")) for u in utts] == [
        "audio/train/0000/a_b_c.flac", "audio/train/0000/a_b_c-2.flac", "audio/train/0001/a_b_c-3.flac",
        "audio/train/0001/a_b_c-4.flac", "audio/train/0002/a_b_c-5.flac"]
    assert [u.id for u in utts] == ["a_b_c", "a_b_c-2", "a_b_c-3", "a_b_c-4", "a_b_c-5"]
    stored, rate = sf.read(utts[0].audio)
    assert rate == 16000 and len(stored) == 1600 and stored.max() == pytest.approx(1.0, abs=1e-4)  # clipped, not wrapped
    assert summary.line() == (f"imported 5 rows from src into {tmp_path}: es/train 5 (0.5 s); 5 audio files written")
    assert safe_name("../x y.wav") == "_x_y.wav" and safe_name("") == "item"


def test_leaving_by_an_error_removes_spools_and_writes_no_manifest(tmp_path):
    with pytest.raises(KeyboardInterrupt), ImportWriter(tmp_path / "out", source="src", unit="rows") as writer:
        writer.add(Utterance(audio="/a.flac", num_samples=10, lang="de"), "train")
        raise KeyboardInterrupt
    assert not (tmp_path / "out" / "de").exists()
    with pytest.raises(XlsrError, match="src: no rows to import"), ImportWriter(tmp_path, source="src", unit="rows") as w:
        w.finish()
    with pytest.raises(XlsrError, match=r"--max-bad-share must be in \[0, 1\), got 1.5"):
        ImportWriter(tmp_path, source="src", unit="rows", max_bad_share=1.5)


def test_the_summary_says_how_many_utterances_are_whole_recordings_to_cut(tmp_path):
    with ImportWriter(tmp_path, source="src", unit="files") as writer:
        for k, seconds in enumerate((3, 31, 600)):  # a clip, and two recordings a folder import kept whole
            writer.add(Utterance(audio=f"/r{k}.flac", num_samples=seconds * 16000, lang="sw", id=f"r{k}"), "train")
        summary = writer.finish()
    assert summary.line() == (f"imported 3 files from src into {tmp_path}: sw/train 3 (10.6 min); 2 longer than 30 s "
                              f"(the longest 10.0 min): pretraining trains on a crop of at most --max-sample-size of "
                              f"such a file each time it draws it, and fine-tuning skips those longer than "
                              f"--max-tokens; cut long recordings into utterances to train on all of them")


def test_the_names_of_full_folders_are_kept_as_hashes_that_find_each_one_and_no_other():
    taken = import_writer.TakenNames()
    names = [f"clip_{i}" for i in range(3000)]
    for folder in range(3):
        taken.enter_folder(folder)
        for name in names[folder * 1000:(folder + 1) * 1000]:
            taken.add(name)
    taken.enter_folder(3)
    assert len(taken.earlier) == 3000 and taken.earlier.dtype == np.uint64 and not taken.current
    assert all(name in taken for name in names)
    assert not any(f"clip_{i}" in taken for i in range(3000, 6000))
