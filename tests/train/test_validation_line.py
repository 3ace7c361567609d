"""Each validation says its figure above the progress bar, as fairseq's and transformers' trainers do: the rate that picks
checkpoints/best over all dev languages and per language, and whether it is the best so far; the figures are those
log.jsonl records."""

import re

import pytest

from xlsr.train.finetune import FinetuneConfig, finetune
from xlsr.train.monitor import read_log

from ._tones import write_tone_corpus

SMALL = {"conv_layers": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, "hidden_size": 32,
         "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "conv_pos": 16, "conv_pos_groups": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_each_validation_is_one_line_with_the_logged_rates(tmp_path, capsys):
    train = [write_tone_corpus(tmp_path / "tones", "train", 8, seed=1, lang=lang) for lang in ("aa", "bb")]
    dev = [write_tone_corpus(tmp_path / "tones", "dev", 4, seed=2, lang=lang) for lang in ("aa", "bb")]
    run = tmp_path / "run"
    finetune(FinetuneConfig(train=[str(t) for t in train], dev=[str(d) for d in dev], out=str(run), model=SMALL,
                            max_updates=4, valid_every=2, max_tokens=60_000, progress=True, tensorboard=False))
    # above the bar (its redraws end in a carriage return)
    lines = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.startswith("xlsr: validation at")]
    records = {(r["update"], r["split"]): r["per"] for r in read_log(run / "log.jsonl") if "per" in r}
    assert len(lines) == 2
    for line, update in zip(lines, (2, 4)):
        shown = f"{100 * records[(update, 'valid')]:.2f}% (aa {100 * records[(update, 'valid_aa')]:.2f}%, " \
                f"bb {100 * records[(update, 'valid_bb')]:.2f}%)"
        assert line.startswith(f"xlsr: validation at update {update}: per {shown}; ")
    assert lines[0].endswith("; the best so far")
    assert re.search(r"; (the best so far|best so far \d+\.\d\d%)$", lines[1])


def test_without_the_bar_validation_says_nothing(tmp_path, capsys):
    """--progress false: the caller reports runs itself (the demo's side-by-side runs print one line each)."""
    train = write_tone_corpus(tmp_path / "tones", "train", 8, seed=1)
    dev = write_tone_corpus(tmp_path / "tones", "dev", 4, seed=2)
    finetune(FinetuneConfig(train=[str(train)], dev=[str(dev)], out=str(tmp_path / "run"), model=SMALL, max_updates=2,
                            valid_every=2, max_tokens=60_000, progress=False, tensorboard=False))
    assert "validation at" not in capsys.readouterr().err
