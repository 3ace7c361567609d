"""A stopped `xlsr transcribe --lm` refused on the rerun says why truly: an OUT.partial of a version that recorded
the checkpoint's fingerprint but not the LM's (before the LM's joined it) is named as such, not as an LM "saved
again since"; a rerun without the --lm (or with another) is the command typed otherwise; and a rebuilt LM or a
checkpoint saved again is named alone. The file is left as it was every time."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from decode_fixtures import tiny_ctc_checkpoint, units_arpa

from xlsr.cli.main import main
from xlsr.decode.transcribe import resolve_checkpoint

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def job(tmp_path) -> tuple[list[str], Path, Path, Path]:
    """A job with --lm stopped with its OUT.partial kept (a file that is not audio failed); args, ckpt, LM, partial."""
    ckpt = tiny_ctc_checkpoint(tmp_path / "tiny-ctc", VOCAB)
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32), 16000)
    bad.write_bytes(b"")
    lm, out = tmp_path / "units.arpa", tmp_path / "o.jsonl"
    lm.write_text(units_arpa(-0.5))
    args = ["transcribe", "--model", str(ckpt), str(good), str(bad), "--out", str(out), "--lm", str(lm),
            "--beam", "4", "--no-progress", "--decode-workers", "0"]
    partial = out.with_name("o.jsonl.partial")
    assert main(args) == 1 and partial.is_file()
    return args, ckpt, lm, partial


def _refusal(args: list[str], partial: Path, capsys) -> str:
    capsys.readouterr()
    before = partial.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert partial.read_bytes() == before  # left as it was
    return err


def test_a_partial_kept_before_the_lm_was_fingerprinted_is_named_so(job, capsys):
    args, ckpt, lm, partial = job
    lines = partial.read_text().splitlines(keepends=True)
    settings = json.loads(lines[0])["settings"]
    settings["model_files"] = resolve_checkpoint(ckpt)[1]  # what the earlier version recorded: the checkpoint's only
    partial.write_text(json.dumps({"settings": settings}) + "\n" + "".join(lines[1:]))
    err = _refusal(args, partial, capsys)
    assert err == (f"xlsr: error: {partial}: results of an earlier run with other settings (model_files); kept by an "
                   f"earlier version of xlsr transcribe, which did not record what --lm {lm} was, so they cannot be "
                   f"checked against it; they are left as they are: finish them with that version, or move the file "
                   f"away (or give another OUT) to start over\n")


def test_a_rerun_without_the_lm_is_the_command_typed_otherwise(job, capsys):
    args, _, lm, partial = job
    without = [a for a in args if a not in ("--lm", str(lm))]
    err = _refusal(without, partial, capsys)
    assert "other settings (lm, model_files); run that command again to finish it, or delete the file" in err
    assert "saved again" not in err


def test_an_lm_built_again_is_named_alone(job, capsys):
    args, ckpt, lm, partial = job
    lm.write_text(units_arpa(-0.75))
    err = _refusal(args, partial, capsys)
    assert f"; --lm {lm} was saved again since (built again?), so what the results were made with is gone" in err
    assert "checkpoint" not in err


def test_a_checkpoint_saved_again_is_named_alone(job, capsys):
    args, ckpt, lm, partial = job
    tiny_ctc_checkpoint(ckpt, VOCAB, seed=1)
    err = _refusal(args, partial, capsys)
    assert f"; the checkpoint {ckpt} was saved again since (a new best or last from training?), so what" in err
    assert "--lm" not in err
