"""A stopped `xlsr transcribe --lm` resumes only with the LM its results were made with: `xlsr lm build` replaces
its own LM in place, so the same --lm may name another model on the rerun, and its results would be mixed with the
earlier ones in one OUT."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from decode_fixtures import tiny_ctc_checkpoint, units_arpa

from xlsr.cli.main import main

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_ctc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-ctc", VOCAB)


def _job(tmp_path: Path, ckpt: Path) -> tuple[list[str], Path, Path]:
    """A job whose first run keeps OUT.partial: one readable file, one that is not audio."""
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32), 16000)
    bad.write_bytes(b"")
    lm, out = tmp_path / "units.arpa", tmp_path / "o.jsonl"
    lm.write_text(units_arpa(-0.5))
    args = ["transcribe", "--model", str(ckpt), str(good), str(bad), "--out", str(out), "--lm", str(lm),
            "--beam", "4", "--no-progress", "--decode-workers", "0"]
    return args, lm, out


def test_an_lm_built_again_since_the_stop_is_refused_and_the_same_one_resumes(tiny_ckpt, tmp_path, capsys):
    args, lm, out = _job(tmp_path, tiny_ckpt)
    partial = out.with_name("o.jsonl.partial")
    assert main(args) == 1 and partial.is_file()  # bad.wav failed: the result of good.wav is kept for a rerun
    capsys.readouterr()
    assert main(args) == 1  # the same LM: resumed
    assert "resuming: 1 of 2 file(s)" in capsys.readouterr().err
    lm.write_text(units_arpa(-0.75))  # rebuilt in place: another LM under the same name
    before = partial.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings (model_files)" in err, err
    assert f"--lm {lm} was saved again since" in err and "delete the file to start over" in err
    assert partial.read_bytes() == before  # left as it was


def test_an_lm_gone_since_the_stop_is_named_and_the_results_kept(tiny_ckpt, tmp_path, capsys):
    args, lm, out = _job(tmp_path, tiny_ckpt)
    partial = out.with_name("o.jsonl.partial")
    assert main(args) == 1 and partial.is_file()
    capsys.readouterr()
    before = partial.read_bytes()
    lm.rename(tmp_path / "moved.arpa")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--lm {lm}: no such file now (moved?)" in err, err
    assert "saved again" not in err  # the LM is not rebuilt, only moved: put back, it finishes them
    assert partial.read_bytes() == before
