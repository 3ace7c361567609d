"""A stopped transcription (or evaluation) whose checkpoint is no longer there on the rerun (moved, deleted) is refused
saying so: not as a checkpoint "saved again since", nor with the advice to give a checkpoint that is gone too."""

import shutil

import pytest

from xlsr.decode.partial_results import PartialResults, decoding_settings
from xlsr.errors import XlsrError

OPTIONS = {"beam": None, "timestamps": False}


def _kept(out, model: str) -> None:
    """A results file of one recording made with --model `model`, as a stopped run leaves it."""
    _, settings, advice = decoding_settings(model, lm=None, lexicon=None, options=OPTIONS)
    kept = PartialResults(out, settings, advice=advice, by_file=True)
    kept.append({"audio": "a.wav", "text": "a"})
    kept.close()


def _refusal(out, model: str) -> str:
    _, settings, advice = decoding_settings(model, lm=None, lexicon=None, options=OPTIONS)
    before = out.with_name(out.name + ".partial").read_bytes()
    with pytest.raises(XlsrError) as refused:
        PartialResults(out, settings, advice=advice, by_file=True)
    assert out.with_name(out.name + ".partial").read_bytes() == before  # left as it was
    return str(refused.value)


def _checkpoint(folder):
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def test_a_checkpoint_moved_away_is_said_to_be_gone(tmp_path):
    ckpt, out = _checkpoint(tmp_path / "ckpt"), tmp_path / "o.jsonl"
    _kept(out, str(ckpt))
    shutil.move(ckpt, tmp_path / "elsewhere")
    assert _refusal(out, str(ckpt)) == (
        f"{out}.partial: results of an earlier run with other settings (model_files); --model {ckpt}: no such file "
        f"now (moved?): give the one they were made with to finish them, or delete the file to start over")


def test_a_checkpoint_typed_relative_and_moved_away_is_not_advised_by_its_old_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt, out = _checkpoint(tmp_path / "ckpt"), tmp_path / "o.jsonl"
    _kept(out, "ckpt")
    shutil.move(ckpt, tmp_path / "elsewhere")
    assert _refusal(out, "ckpt") == (
        f"{out}.partial: results of an earlier run with other settings (model, model_files); --model ckpt: no such "
        f"file now (moved?); they were made with the checkpoint {ckpt}: give it to finish them, or delete the file "
        f"to start over")


def test_a_checkpoint_saved_again_or_another_one_is_said_as_before(tmp_path):
    ckpt, out = _checkpoint(tmp_path / "ckpt"), tmp_path / "o.jsonl"
    _kept(out, str(ckpt))
    (ckpt / "model.safetensors").write_bytes(b"new weights")
    assert _refusal(out, str(ckpt)).endswith(
        f"(model_files); the checkpoint {ckpt} was saved again since (a new best or last from training?), so what "
        f"the results were made with is gone: delete the file to start over")
    other = _checkpoint(tmp_path / "other")
    assert _refusal(out, str(other)).endswith(
        f"(model, model_files); they were made with the checkpoint {ckpt}, and --model {other} now means {other}: "
        f"give --model {ckpt} to finish them, or delete the file to start over")


def test_the_checkpoint_moved_whole_and_given_where_it_is_now_finishes_the_results(tmp_path):
    """(refused, advising the old path, which no longer exists: `give --model OLD to finish them`)"""
    ckpt, out = _checkpoint(tmp_path / "ckpt"), tmp_path / "o.jsonl"
    _kept(out, str(ckpt))
    moved = tmp_path / "renamed"
    shutil.move(ckpt, moved)  # a rename keeps each file's name, size and time
    _, settings, advice = decoding_settings(str(moved), lm=None, lexicon=None, options=OPTIONS)
    kept = PartialResults(out, settings, advice=advice, by_file=True)
    assert len(kept.done()) == 1  # the kept result, not refused
    kept.close()
    (moved / "model.safetensors").write_bytes(b"new weights")  # moved and written again: another checkpoint
    _checkpoint(tmp_path / "ckpt")  # and the recorded path exists again: that one is named, as before
    assert "give --model" in _refusal(out, str(moved))
