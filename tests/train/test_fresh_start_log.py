"""A run that starts afresh in a folder with an earlier log (killed before its first checkpoint) starts it empty."""

import json

from xlsr.train.monitor import read_log
from xlsr.train.trainer import Trainer

from ._toy import ToyTask
from .test_trainer import _cfg


def test_a_fresh_start_drops_the_records_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # what a run killed at update 3, before its first checkpoint (save_every 4), leaves: no checkpoints, a log
    stale = [{"update": u, "split": "train", "loss": 99.0} for u in (1, 2, 3)]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale))
    Trainer(_cfg(run, max_updates=4, valid_every=0, save_every=4), ToyTask()).fit()
    train = [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"]
    assert [r["update"] for r in train] == [1, 2, 3, 4]  # each update once: `xlsr plot` draws no second curve
    assert all(r["loss"] != 99.0 for r in train)
