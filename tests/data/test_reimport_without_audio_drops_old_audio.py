"""An import that references files where they lie (Common Voice, fairseq, folder), over a split whose earlier import
wrote audio into DIR/<lang>/audio/<split>/, removes that folder once its manifest is committed, unless a manifest
lists a file in it or the writer did not make it; killed at any step, it leaves the old corpus with its audio or the
new one, and the next import into DIR removes what no manifest lists."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.audio import load_audio
from xlsr.data.import_writer import ImportWriter
from xlsr.data.manifest import Utterance, read_manifest, write_manifest

OLD = {f"clip_{i}": (4000, 4000) for i in range(3)}  # id: (num_samples listed, samples in the file it lists)
NEW = {f"ref_{i}": (8000, 8000) for i in range(2)}


class Killed(BaseException):
    """The process ending at this step: no handler of the writer runs (its flock goes with it)."""


def _import_audio(out, count: int = 3, split: str = "train", seconds: float = 0.25):
    """An import that writes its audio (lhotse segments, Hugging Face rows)."""
    with ImportWriter(out, source="src", unit="rows") as writer:
        for i in range(count):
            x = np.random.default_rng(i).uniform(-0.4, 0.4, int(seconds * 16000)).astype(np.float32)
            utt_id = writer.unique_id(f"clip_{i}", "en", split)
            path = writer.write_audio(x, utt_id, "en", split)
            writer.add(Utterance(audio=str(path), num_samples=len(x), lang="en", id=utt_id), split)
        return writer.finish()


def _import_refs(out, files: dict[str, Path], split: str = "train"):
    """An import that references `files` ({id: path}) where they lie, writing no audio (Common Voice, fairseq)."""
    with ImportWriter(out, source="src", unit="rows") as writer:
        for utt_id, path in files.items():
            writer.add(Utterance(audio=str(path), num_samples=sf.info(str(path)).frames, lang="en", id=utt_id), split)
        return writer.finish()


def _clips(folder: Path, count: int = 2, seconds: float = 0.5, suffix: str = ".wav") -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(count):
        files[f"ref_{i}"] = folder / f"ref_{i}{suffix}"
        sf.write(files[f"ref_{i}"], np.zeros(int(seconds * 16000), np.float32), 16000)
    return files


def _corpus(out, split: str = "train") -> dict:
    return {u.id: (u.num_samples, len(load_audio(u.audio))) for u in read_manifest(out / "en" / f"{split}.jsonl")}


def _hidden(out) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in Path(out).rglob(".*"))


def _audio_folders(out) -> list[str]:
    audio = Path(out) / "en" / "audio"
    return sorted(p.name for p in audio.iterdir()) if audio.is_dir() else []


def test_the_earlier_imports_audio_goes_once_the_new_manifest_is_in_place(tmp_path):
    out = tmp_path / "data"
    _import_audio(out)
    _import_refs(out, _clips(tmp_path / "cv"))
    assert _corpus(out) == NEW and _hidden(out) == []
    assert _audio_folders(out) == []  # audio/train, listed by no manifest, is gone (and audio/ with it)


def test_audio_the_new_manifest_lists_is_kept(tmp_path):
    out = tmp_path / "data"
    _import_audio(out)
    kept = out / "en" / "audio" / "train" / "0000" / "clip_1.flac"
    _import_refs(out, {"ref_0": kept})  # e.g. a fairseq tsv written from the earlier corpus
    assert _corpus(out) == {"ref_0": (4000, 4000)} and kept.is_file()
    assert _audio_folders(out) == ["train"] and _hidden(out) == []


def test_audio_another_manifest_of_the_folder_lists_is_kept(tmp_path):
    out = tmp_path / "data"
    _import_audio(out)
    kept = out / "en" / "audio" / "train" / "0000" / "clip_2.flac"
    write_manifest(out / "en" / "extra.jsonl", [Utterance(audio=str(kept), num_samples=4000, lang="en", id="x")])
    _import_refs(out, _clips(tmp_path / "cv"))
    assert _corpus(out) == NEW and _corpus(out, "extra") == {"x": (4000, 4000)}
    assert _audio_folders(out) == ["train"] and _hidden(out) == []


def test_a_folder_the_writer_did_not_make_is_kept(tmp_path):
    out = tmp_path / "data"
    own = _clips(out / "en" / "audio" / "train")  # the user's recordings, imported where they lie
    _import_refs(out, {f"clip_{i}": path for i, path in enumerate(own.values())})
    _import_refs(out, _clips(tmp_path / "cv"))
    assert _corpus(out) == NEW and all(path.is_file() for path in own.values())
    assert _audio_folders(out) == ["train"] and _hidden(out) == []


def _killed_at(monkeypatch, step: int) -> list[str]:
    """Make the step-th rename, link or folder removal from here on end the process; the steps taken so far."""
    steps: list[str] = []

    def counted(name, real):
        def call(*args, **kwargs):
            if len(steps) + 1 == step:
                raise Killed
            steps.append(f"{name} {Path(args[0]).name}")
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "replace", counted("replace", os.replace))
    monkeypatch.setattr(os, "link", counted("link", os.link))
    monkeypatch.setattr(shutil, "rmtree", counted("rmtree", shutil.rmtree))
    # a kill runs no cleanup: only the lock goes, as the kernel drops a dead process's flock
    monkeypatch.setattr(ImportWriter, "__exit__", lambda self, *exc: self._lock.__exit__(None, None, None))
    return steps


def test_a_reimport_without_audio_killed_at_any_step_leaves_one_corpus_and_no_unlisted_audio(tmp_path, monkeypatch):
    refs = _clips(tmp_path / "cv")
    outcomes = []
    for step in range(1, 20):
        out = tmp_path / f"kill-{step}"
        _import_audio(out)
        steps = _killed_at(monkeypatch, step)
        killed = False
        try:
            _import_refs(out, refs)
        except Killed:
            killed = True
        monkeypatch.undo()
        found = _corpus(out)
        assert found in (OLD, NEW), f"killed before step {step} (after {steps}): {found}"
        outcomes.append("old" if found == OLD else "new")
        _import_audio(out, 1, split="dev")  # the next import, into another split, settles what the killed one left
        assert _corpus(out) == found, f"killed before step {step}: the next import changed the corpus"
        assert _hidden(out) == [], f"killed before step {step}: left {_hidden(out)}"
        assert _audio_folders(out) == (["dev", "train"] if found == OLD else ["dev"]), f"killed before step {step}"
        if not killed:
            break
    else:
        pytest.fail("the re-import took more steps than the test tries")
    assert outcomes == sorted(outcomes, reverse=True) and outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes.count("new") >= 2  # killed before the old audio's removal, and not killed
