"""Each validation says its figure on the console, as fairseq's and transformers' trainers do: the rate that picks
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
                            max_updates=4, valid_every=2, max_tokens=60_000, progress=False, tensorboard=False))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xlsr: validation at")]
    records = {(r["update"], r["split"]): r["per"] for r in read_log(run / "log.jsonl") if "per" in r}
    assert len(lines) == 2
    for line, update in zip(lines, (2, 4)):
        shown = f"{100 * records[(update, 'valid')]:.2f}% (aa {100 * records[(update, 'valid_aa')]:.2f}%, " \
                f"bb {100 * records[(update, 'valid_bb')]:.2f}%)"
        assert line.startswith(f"xlsr: validation at update {update}: per {shown}; ")
    assert lines[0].endswith("; the best so far")
    assert re.search(r"; (the best so far|best so far \d+\.\d\d%)$", lines[1])
