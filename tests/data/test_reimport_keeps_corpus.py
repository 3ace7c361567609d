"""An import into a folder that holds a corpus leaves it whole until the new one replaces it, and one import at a
time writes there."""

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from xlsr.data.audio import load_audio
from xlsr.data.import_writer import ImportWriter
from xlsr.data.manifest import Utterance, read_manifest
from xlsr.errors import XlsrError


def _import(out, seconds: float, names: list[str], *, bad: int = 0, stop_after: int | None = None):
    """Import `names` as clips of `seconds`, plus `bad` bad items; KeyboardInterrupt after `stop_after` clips."""
    with ImportWriter(out, source="src", unit="rows") as writer:
        for i, name in enumerate(names):
            if i == stop_after:
                raise KeyboardInterrupt
            x = np.random.default_rng(i).uniform(-0.4, 0.4, int(seconds * 16000)).astype(np.float32)
            utt_id = writer.unique_id(name, "en", "train")
            path = writer.write_audio(x, utt_id, "en", "train")
            writer.add(Utterance(audio=str(path), num_samples=len(x), lang="en", id=utt_id), "train")
        for i in range(bad):
            writer.skip(f"src:row {len(names) + i}", "not a readable audio file")
        return writer.finish()


def _corpus(out) -> dict[str, tuple[int, int]]:
    """{id: (num_samples in the manifest, samples in the file it lists)}."""
    return {u.id: (u.num_samples, len(load_audio(u.audio))) for u in read_manifest(out / "en" / "train.jsonl")}


def _hidden(out) -> list[str]:
    return sorted(p.name for p in Path(out).rglob(".*"))


NAMES = [f"clip_{i}" for i in range(3)]


def test_a_refused_reimport_leaves_the_earlier_corpus_whole(tmp_path):
    _import(tmp_path, 0.25, NAMES)
    with pytest.raises(XlsrError, match="more than max_bad_share"):
        _import(tmp_path, 0.5, NAMES, bad=3)  # the same names: its audio would land on the earlier files
    assert _corpus(tmp_path) == {n: (4000, 4000) for n in NAMES}
    assert _hidden(tmp_path) == []  # its audio, spool and lock removed


def test_an_interrupted_reimport_leaves_the_earlier_corpus_whole(tmp_path):
    _import(tmp_path, 0.25, NAMES)
    with pytest.raises(KeyboardInterrupt):
        _import(tmp_path, 0.5, NAMES, stop_after=2)
    assert _corpus(tmp_path) == {n: (4000, 4000) for n in NAMES}
    assert _hidden(tmp_path) == []


def test_a_reimport_that_succeeds_replaces_manifest_and_audio_together(tmp_path):
    _import(tmp_path, 0.25, NAMES)
    _import(tmp_path, 0.5, NAMES[:2])
    assert _corpus(tmp_path) == {n: (8000, 8000) for n in NAMES[:2]}
    # the earlier import's audio that no manifest lists any more is gone, and nothing hidden is left
    assert sorted(p.name for p in (tmp_path / "en" / "audio" / "train" / "0000").iterdir()) == \
        ["clip_0.flac", "clip_1.flac"]
    assert _hidden(tmp_path) == []


def test_a_second_import_into_a_busy_folder_is_refused(tmp_path):
    with ImportWriter(tmp_path, source="first", unit="rows"):
        with pytest.raises(XlsrError, match=f"^{tmp_path}: another import is writing into it"):
            _import(tmp_path, 0.25, NAMES)
    assert not (tmp_path / "en").exists()  # the refused one wrote nothing
    _import(tmp_path, 0.25, NAMES)  # once the first has ended, the folder is free again
    assert _corpus(tmp_path) == {n: (4000, 4000) for n in NAMES}


def test_what_a_killed_import_left_is_removed_by_the_next(tmp_path):
    _import(tmp_path, 0.25, NAMES)
    staged = tmp_path / "en" / "audio" / ".train.importing" / "0000"
    staged.mkdir(parents=True)
    (staged / "clip_9.flac").write_bytes(b"half a file")
    (tmp_path / ".lock").write_text("12345\n")  # its flock went with the process
    _import(tmp_path, 0.5, NAMES[:1])
    assert _corpus(tmp_path) == {"clip_0": (8000, 8000)}
    assert _hidden(tmp_path) == []


def test_a_reimport_onto_a_full_disk_names_the_file_and_leaves_the_earlier_corpus_whole(tmp_path, monkeypatch):
    _import(tmp_path, 0.25, NAMES)
    real, written = Path.write_bytes, []

    def full_after_one(self, data):
        written.append(self)
        if len(written) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a failed write(): no file named
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_after_one)
    with pytest.raises(OSError) as caught:
        _import(tmp_path, 0.5, NAMES)
    assert caught.value.filename == str(tmp_path / "en" / "audio" / "train" / "0000" / "clip_1.flac")
    monkeypatch.undo()
    assert _corpus(tmp_path) == {n: (4000, 4000) for n in NAMES}
    assert _hidden(tmp_path) == []
