"""A fine-tuning run resumed with other dev manifests chooses checkpoints/best anew: the rate the old best was
chosen by was measured on other data, and kept as the bar it would keep `best` on a model the new dev set never
measured (or move it on a comparison of two sets)."""

import pytest

from xlsr.train.checkpoint import load_trainer_state
from xlsr.train.finetune import FinetuneConfig, finetune

from ._tones import write_tone_corpus

SMALL = {"conv_layers": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, "hidden_size": 32,
         "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "conv_pos": 16, "conv_pos_groups": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(train, dev, out, max_updates: int) -> FinetuneConfig:
    return FinetuneConfig(train=[str(train)], dev=[str(dev)], out=str(out), model=SMALL, max_updates=max_updates,
                          valid_every=2, save_every=2, max_tokens=60_000, progress=False, tensorboard=False)


def test_a_resume_with_other_dev_sets_chooses_best_anew(tmp_path, capsys):
    train = write_tone_corpus(tmp_path / "tones", "train", 12, seed=1)
    dev_a = write_tone_corpus(tmp_path / "tones", "dev", 6, seed=2)
    dev_b = write_tone_corpus(tmp_path / "other", "dev", 6, seed=3)
    run = tmp_path / "run"
    finetune(_config(train, dev_a, run, 4))
    best_before = load_trainer_state(run / "checkpoints" / "best")
    assert best_before["update"] < 4  # a tiny model predicts blanks: every rate is 100%, the first one stays best
    capsys.readouterr()
    finetune(_config(train, dev_b, run, 6))
    assert "checkpoints/best is chosen anew from the next validation on" in capsys.readouterr().err
    best_after = load_trainer_state(run / "checkpoints" / "best")
    assert best_after["update"] == 6 and best_after["best"] is not None
