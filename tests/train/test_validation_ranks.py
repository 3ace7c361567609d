"""Validation when one rank reads the dev set otherwise than the others (2 gloo processes on CPU).

A dev file that fails to read on one rank only (a storage hiccup on one node, a node's own copy of the data) gives
that rank another validation figure, or under FSDP fewer forwards. The ranks must still agree on `best` and on
the number of collective forwards: either disagreement used to leave them waiting for each other for good.
"""

import os

import pytest
import torch

from xlsr.train import checkpoint as ckpt
from xlsr.train.monitor import read_log
from xlsr.train.trainer import Trainer, TrainerConfig

from . import _ranks
from ._toy import ToyTask

DEADLINE_S = 90  # a run ends in about 20 s on 2 busy cores; a hang is killed here and fails the test


class DevUnreadableOnRank1Once(ToyTask):
    """At the second validation (update 2) every dev file fails to read on rank 1: its dev set yields nothing."""

    validations = 0

    def valid_sets(self):
        self.validations += 1
        if self.info.rank == 1 and self.validations == 2:
            return {"toy": []}
        return super().valid_sets()


def _worker(rank: int, world: int, port: int, out: str, strategy: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = TrainerConfig(out=out, max_updates=3, lr=1e-2, warmup_updates=0, device="cpu", log_every=1, valid_every=1,
                        save_every=0, progress=False, tensorboard=False, distributed=strategy)
    Trainer(cfg, DevUnreadableOnRank1Once(rows=4)).fit()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_dev_set_unreadable_on_one_rank_neither_hangs_nor_splits_the_choice_of_best(tmp_path, strategy):
    codes, _ = _ranks.wait(_ranks.start(_worker, (2, _ranks.free_ports(1)[0], str(tmp_path), strategy),
                                        deadline_s=DEADLINE_S), deadline_s=DEADLINE_S + 10)
    assert codes == [0, 0], f"the ranks exited with {codes} (1: killed at the deadline, a hang); output above"
    records = read_log(tmp_path / "log.jsonl")
    valid = {r["update"]: r["loss"] for r in records if r.get("split") == "valid"}
    if strategy == "ddp":  # rank 0 read its dev set each time: its figures are logged, and `best` follows them
        assert sorted(valid) == [1, 2, 3]
    else:  # FSDP: rank 1 had no batch at update 2, so no rank validated then (a forward is collective)
        assert sorted(valid) == [1, 3]
        warned = [r for r in records if r.get("warning") == "valid_ranks"]
        assert [r["update"] for r in warned] == [2] and "1 of 2 ranks had no next batch" in warned[0]["message"]
    best_update = min(valid, key=valid.get)
    assert (tmp_path / "checkpoints" / "best").resolve().name == ckpt.update_dir_name(best_update)
    assert ckpt.load_trainer_state(tmp_path / "checkpoints" / "last")["best"] == pytest.approx(valid[best_update])
