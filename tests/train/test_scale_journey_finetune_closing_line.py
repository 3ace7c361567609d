"""`torchrun ... -m xlsr.cli.main finetune ...` ends with one `run folder:` line, said by rank 0 (as pretrain's), not one
per rank; every rank still exits with the run's status."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import xlsr.train.finetune as finetune_module
from xlsr.cli import INTERRUPTED
from xlsr.cli import finetune as finetune_cli


@pytest.fixture
def finished_run(tmp_path, monkeypatch):
    """`xlsr finetune`'s run() with the training replaced by a run that stopped early (status INTERRUPTED)."""
    cfg = SimpleNamespace(dev=["dev.jsonl"], labels="chars", max_updates=4, train_only="none", target_lang=None)
    monkeypatch.setattr(finetune_cli, "finetune_config", lambda args: cfg)
    monkeypatch.setattr(finetune_module, "finetune", lambda cfg: tmp_path)
    monkeypatch.setattr(finetune_module, "best_dev_summary", lambda run_dir, labels: "checkpoints/best: update 2")
    monkeypatch.setattr(finetune_cli, "training_status", lambda run_dir, max_updates: INTERRUPTED)
    return tmp_path


@pytest.mark.parametrize("rank, says", [("0", True), ("1", False)])
def test_only_rank_0_says_where_the_run_folder_is(finished_run, monkeypatch, capsys, rank, says):
    monkeypatch.setenv("RANK", rank)
    assert finetune_cli.run(SimpleNamespace()) == INTERRUPTED
    out = capsys.readouterr().out
    assert out == (f"run folder: {finished_run}  (checkpoints/best: update 2; `xlsr transcribe --model {finished_run} "
                   f"...`, `xlsr evaluate --model {finished_run} ...`)\n" if says else "")
