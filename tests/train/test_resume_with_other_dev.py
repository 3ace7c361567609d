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


def test_a_dev_manifest_edited_in_place_chooses_best_anew_and_an_untouched_one_keeps_it(tmp_path, capsys):
    """(only the dev paths were compared: a manifest edited in place, or another --max-tokens leaving other long dev
    utterances out, kept a `best` measured on other data as the bar)"""
    train = write_tone_corpus(tmp_path / "tones", "train", 12, seed=1)
    dev = write_tone_corpus(tmp_path / "tones", "dev", 6, seed=2)
    run = tmp_path / "run"
    finetune(_config(train, dev, run, 4))
    capsys.readouterr()
    finetune(_config(train, dev, run, 6))  # the same dev set: best stays
    assert "chosen anew" not in capsys.readouterr().err
    dev.write_text("".join(dev.read_text().splitlines(keepends=True)[1:]))  # one utterance fewer, same path
    finetune(_config(train, dev, run, 8))
    assert "checkpoints/best is chosen anew from the next validation on" in capsys.readouterr().err
