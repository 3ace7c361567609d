"""Ranks that meet the same error (a setting a resume refuses, a batch size that cannot fit: every rank checks alike)
print it once under torchrun: the first rank to announce it does, the others exit 2 without a word. An error that
differs is still printed by the rank that met it."""

from __future__ import annotations

import os
import socket
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from xlsr.errors import XlsrError
from xlsr.train import elastic
from xlsr.train.distributed import DistInfo
from xlsr.train.trainer import Trainer, TrainerConfig

from . import _ranks
from ._toy import ToyTask

REFUSED = "run: holds a run started with seed 1 (config.yaml), not 7"


@pytest.fixture
def store(monkeypatch):
    """One in-memory store for every watch of the test, all of one group (the same key); the watch threads stay out of
    it, and a wait for the first rank's process is recorded instead of waited (every watch here is this process)."""
    shared = dist.HashStore()
    monkeypatch.setattr(elastic, "_group_store", lambda: shared)
    monkeypatch.setattr(elastic, "broadcast_object", lambda obj, info: obj)
    monkeypatch.setattr(elastic, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex="group")))
    monkeypatch.setattr(elastic, "POLL_SECONDS", 60.0)
    monkeypatch.setattr(elastic, "READ_WAIT_SECONDS", 0.0, raising=False)  # rank 0 fails after rank 1
    waited = []
    monkeypatch.setattr(elastic, "_wait_until_gone", lambda process, limit_s: waited.append(process))
    return shared, waited


def _fail(tmp_path, rank: int, exc: Exception) -> None:
    """Rank `rank` of a 2-rank group raising `exc` inside the failure watch."""
    with elastic.one_failure_ends_all(DistInfo(rank=rank, world_size=2), tmp_path):
        raise exc


def test_a_rank_with_the_error_a_peer_announced_first_exits_2_and_leaves_the_saying_to_it(tmp_path, store, capsys):
    shared, waited = store
    with pytest.raises(XlsrError):  # rank 1 first: its own line, for main to print
        _fail(tmp_path, 1, XlsrError(REFUSED))
    with pytest.raises(SystemExit) as ended:  # rank 0, the same error: quiet
        _fail(tmp_path, 0, XlsrError(REFUSED))
    assert ended.value.code == 2
    assert capsys.readouterr().err == ""
    assert shared.get(elastic.FAILED_KEY + "group").decode() == f"rank 1 failed: {REFUSED}"  # what the others read
    assert waited == [f"{socket.gethostname()} {os.getpid()}"]  # it ended after rank 1's process (here: this one)


def test_a_rank_whose_error_differs_from_the_announced_one_raises_its_own(tmp_path, store):
    shared, _ = store
    with pytest.raises(XlsrError):
        _fail(tmp_path, 1, XlsrError(REFUSED))
    with pytest.raises(XlsrError, match="no batches"):
        _fail(tmp_path, 0, XlsrError("training data: an epoch gave rank 0 no batches"))
    assert shared.get(elastic.FAILED_KEY + "group").decode() == \
        "rank 0 failed: training data: an epoch gave rank 0 no batches"


def _fail_of(tmp_path, rank: int, world: int, exc: Exception) -> str:
    """How rank `rank` of a `world`-rank group ends on `exc`: 'prints' (raises it for main) or 'quiet' (exit 2)."""
    try:
        with elastic.one_failure_ends_all(DistInfo(rank=rank, world_size=world), tmp_path):
            raise exc
    except SystemExit as ended:
        assert ended.code == 2
        return "quiet"
    except type(exc):
        return "prints"


def test_an_error_is_said_once_though_another_rank_announced_another_error_in_between(tmp_path, store):
    shared, _ = store
    other = "training data: a batch of rank 2's files could not be read"
    said = [_fail_of(tmp_path, rank, 3, XlsrError(message)) for rank, message in ((1, REFUSED), (2, other), (0, REFUSED))]
    assert said == ["prints", "prints", "quiet"]
    assert shared.get(elastic.FAILED_KEY + "group").decode() == f"rank 2 failed: {other}"  # the latest error's


def test_an_error_naming_a_file_whose_name_is_not_utf8_is_announced_and_said_once(tmp_path, store):
    shared, _ = store
    bad = os.fsdecode(b"/data/caf\xe9.flac") + ": could not be decoded"  # a Latin-1 file name on a UTF-8 system
    assert _fail_of(tmp_path, 1, 2, XlsrError(bad)) == "prints"
    # the peers read it (the store takes UTF-8 text only: the byte as stderr shows it)
    key = elastic.FAILED_KEY + "group"
    assert shared.check([key]), "no announcement"  # (a get would wait for it)
    assert shared.get(key).decode() == "rank 1 failed: /data/caf\\udce9.flac: could not be decoded"
    assert _fail_of(tmp_path, 0, 2, XlsrError(bad)) == "quiet"


# --- two real ranks (spawned interpreters, gloo), failing together in the same update ---------------------------------

def _same_error_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)

    class FailsInUpdate2(ToyTask):
        def train_step(self, model, batch):
            if int(batch[2]) == 1:  # update 2, on both ranks
                raise XlsrError(REFUSED)
            return super().train_step(model, batch)

    cfg = TrainerConfig(out=out, max_updates=4, lr=1e-2, warmup_updates=0, device="cpu", log_every=1,
                        valid_every=0, save_every=0, progress=False, tensorboard=False)
    try:
        Trainer(cfg, FailsInUpdate2(batches_per_epoch=8, rows=4)).fit()
    except XlsrError as exc:  # as `xlsr` does
        print(f"xlsr: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def test_two_ranks_failing_together_print_the_error_once(tmp_path, capfd):
    codes, _ = _ranks.wait(_ranks.start(_same_error_rank, (_ranks.free_ports(1)[0], str(tmp_path))))
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("xlsr: error:")] == [f"xlsr: error: {REFUSED}"], err
    assert sorted(codes) in ([1, 2], [2, 2]), codes  # the other: quiet (2), or ended by its watch for the peer (1)
    assert "Traceback" not in err
