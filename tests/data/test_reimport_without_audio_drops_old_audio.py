"""An import that references files where they lie (Common Voice, fairseq, folder), over a split whose earlier import
wrote audio into DIR/<lang>/audio/<split>/, removes that folder once its manifest is committed, unless a manifest
lists a file in it or the writer did not make it; killed at any step, it leaves the old corpus with its audio or the
new one, and the next import into DIR removes what no manifest lists."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _reimport_kills import corpus, hidden, import_audio, run_killed_at

from xlsr.data.import_writer import ImportWriter
from xlsr.data.manifest import Utterance, write_manifest

OLD = {f"clip_{i}": (4000, 4000) for i in range(3)}  # id: (num_samples listed, samples in the file it lists)
NEW = {f"ref_{i}": (8000, 8000) for i in range(2)}


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


def _audio_folders(out) -> list[str]:
    audio = Path(out) / "en" / "audio"
    return sorted(p.name for p in audio.iterdir()) if audio.is_dir() else []


def test_the_earlier_imports_audio_goes_once_the_new_manifest_is_in_place(tmp_path):
    out = tmp_path / "data"
    import_audio(out)
    _import_refs(out, _clips(tmp_path / "cv"))
    assert corpus(out) == NEW and hidden(out) == []
    assert _audio_folders(out) == []  # audio/train, listed by no manifest, is gone (and audio/ with it)


def test_audio_the_new_manifest_lists_is_kept(tmp_path):
    out = tmp_path / "data"
    import_audio(out)
    kept = out / "en" / "audio" / "train" / "0000" / "clip_1.flac"
    _import_refs(out, {"ref_0": kept})  # e.g. a fairseq tsv written from the earlier corpus
    assert corpus(out) == {"ref_0": (4000, 4000)} and kept.is_file()
    assert _audio_folders(out) == ["train"] and hidden(out) == []


def test_audio_another_manifest_of_the_folder_lists_is_kept(tmp_path):
    out = tmp_path / "data"
    import_audio(out)
    kept = out / "en" / "audio" / "train" / "0000" / "clip_2.flac"
    write_manifest(out / "en" / "extra.jsonl", [Utterance(audio=str(kept), num_samples=4000, lang="en", id="x")])
    _import_refs(out, _clips(tmp_path / "cv"))
    assert corpus(out) == NEW and corpus(out, "extra") == {"x": (4000, 4000)}
    assert _audio_folders(out) == ["train"] and hidden(out) == []


def test_a_folder_the_writer_did_not_make_is_kept(tmp_path):
    out = tmp_path / "data"
    own = _clips(out / "en" / "audio" / "train")  # the user's recordings, imported where they lie
    _import_refs(out, {f"clip_{i}": path for i, path in enumerate(own.values())})
    _import_refs(out, _clips(tmp_path / "cv"))
    assert corpus(out) == NEW and all(path.is_file() for path in own.values())
    assert _audio_folders(out) == ["train"] and hidden(out) == []


def test_a_reimport_without_audio_killed_at_any_step_leaves_one_corpus_and_no_unlisted_audio(tmp_path, monkeypatch):
    refs = _clips(tmp_path / "cv")
    outcomes = []
    for step in range(1, 20):
        out = tmp_path / f"kill-{step}"
        import_audio(out)
        killed, steps = run_killed_at(monkeypatch, step, _import_refs, out, refs)
        found = corpus(out)
        assert found in (OLD, NEW), f"killed before step {step} (after {steps}): {found}"
        outcomes.append("old" if found == OLD else "new")
        import_audio(out, 1, split="dev")  # the next import, into another split, settles what the killed one left
        assert corpus(out) == found, f"killed before step {step}: the next import changed the corpus"
        assert hidden(out) == [], f"killed before step {step}: left {hidden(out)}"
        assert _audio_folders(out) == (["dev", "train"] if found == OLD else ["dev"]), f"killed before step {step}"
        if not killed:
            break
    else:
        pytest.fail("the re-import took more steps than the test tries")
    assert outcomes == sorted(outcomes, reverse=True) and outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes.count("new") >= 2  # killed before the old audio's removal, and not killed
