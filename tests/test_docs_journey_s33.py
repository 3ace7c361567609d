"""What the guides promise, checked where the code had strayed from them (a reader following docs/importing.md and
docs/transcription.md literally)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _constant_ctc import constant_model

from xlsr.cli.main import main
from xlsr.data.import_writer import SKIPPED_FILE
from xlsr.data.importers import import_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def _wavs(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        sf.write(folder / f"{name}.wav", 0.1 * np.sin(np.arange(8000) / 5.0), 16000)
    return folder


def test_import_skipped_lists_the_last_imports_skips_only(tmp_path):
    """docs/importing.md: skipped items are listed in DIR/import_skipped.txt, "the last import's". An import that
    skipped nothing left the list of an earlier one there, naming items the last import never skipped."""
    wavs = _wavs(tmp_path / "wavs", ["a", "b"])
    (tmp_path / "bad.txt").write_text("a eins\nb zwei\nmissing drei\n")
    import_folder(wavs, tmp_path / "bad.txt", tmp_path / "out", lang="de", split="dev", max_bad_share=0.5)
    assert "missing" in (tmp_path / "out" / SKIPPED_FILE).read_text()
    (tmp_path / "good.txt").write_text("a eins\nb zwei\n")
    summary = import_folder(wavs, tmp_path / "good.txt", tmp_path / "out", lang="de", split="dev")
    assert summary.skipped == 0 and not (tmp_path / "out" / SKIPPED_FILE).exists()


def test_a_one_word_transcript_of_a_model_with_word_boundaries_has_word_timestamps(tmp_path):
    """docs/transcription.md: with --timestamps, where the model has the word boundary `|`, each word's start and
    end (`word_timestamps`). A transcript of one word (no `|` emitted) had no such field, so a reader of the model's
    output met it on some lines and not on others."""
    model = constant_model(tmp_path / "model", ["<blank>", "<unk>", "|", "a", "b"], "a", "chars")  # says "a"
    sf.write(tmp_path / "x.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = tmp_path / "out.jsonl"
    assert main(["transcribe", "--model", str(model), str(tmp_path / "x.wav"), "--out", str(out), "--timestamps",
                 "--no-progress", "--decode-workers", "0"]) == 0
    line = json.loads(out.read_text())
    assert line["text"] == "a" and "|" not in line["tokens"]
    assert line["word_timestamps"] == [{"word": "a", "start": line["timestamps"][0]["start"],
                                        "end": line["timestamps"][-1]["end"]}]


def test_a_model_without_word_boundaries_still_gives_no_word_timestamps(tmp_path):
    """The other side of the rule: a phone vocabulary without `|` does not show where words meet."""
    model = constant_model(tmp_path / "model", ["<blank>", "<unk>", "a", "b"], "a", "phones")
    sf.write(tmp_path / "x.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = tmp_path / "out.jsonl"
    assert main(["transcribe", "--model", str(model), str(tmp_path / "x.wav"), "--out", str(out), "--timestamps",
                 "--no-progress", "--decode-workers", "0"]) == 0
    line = json.loads(out.read_text())
    assert line["tokens"] == ["a"] and "timestamps" in line and "word_timestamps" not in line
