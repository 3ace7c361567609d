"""A resume given the same dev manifest spelled another way (`dev/./x.jsonl`, `data/` for `data`) keeps
checkpoints/best: the resume's check of the settings takes it for the same file, and so must the choice of `best`."""

import pytest

from xlsr.train.checkpoint import load_trainer_state
from xlsr.train.finetune import FinetuneConfig, finetune

from ._tones import write_tone_corpus

SMALL = {"conv_layers": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, "hidden_size": 32,
         "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "conv_pos": 16, "conv_pos_groups": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(train, dev: str, out, max_updates: int) -> FinetuneConfig:
    return FinetuneConfig(train=[str(train)], dev=[dev], out=str(out), model=SMALL, max_updates=max_updates,
                          valid_every=2, save_every=2, max_tokens=60_000, progress=False, tensorboard=False)


def test_a_resume_with_the_same_dev_spelled_otherwise_keeps_best(tmp_path, capsys):
    train = write_tone_corpus(tmp_path / "tones", "train", 12, seed=1)
    dev = write_tone_corpus(tmp_path / "tones", "dev", 6, seed=2)
    run = tmp_path / "run"
    finetune(_config(train, str(dev), run, 4))
    best_before = load_trainer_state(run / "checkpoints" / "best")["update"]
    assert best_before < 4  # a tiny model predicts blanks: every rate is 100%, the first one stays best
    capsys.readouterr()
    finetune(_config(train, f"{dev.parent}/./{dev.name}", run, 6))
    assert "chosen anew" not in capsys.readouterr().err
    assert load_trainer_state(run / "checkpoints" / "best")["update"] == best_before
