"""RUN/fatal_error.json belongs to the torchrun job that holds the run folder's lock: a second job started by mistake
into a live job's folder is refused and leaves that job's record (which its own restarts read) as it found it.

torchrun is played by its environment variables (TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_RUN_ID, RANK), the live
job by a lock this test holds."""

import json
import os
import sys

import pytest

from xlsr.errors import XlsrError
from xlsr.folder_lock import folder_lock
from xlsr.train.elastic import FATAL_FILE
from xlsr.train.trainer import Trainer

from . import _ranks
from ._elastic_worker import run_config
from ._toy import ToyTask
from .test_trainer import _cfg

pytest.importorskip("fcntl")  # no run-folder lock where there is no flock (Windows)

LIVE_RECORD = json.dumps({"job": "live-job", "attempt": 0, "rank": 1, "message": "data/x.jsonl: too many bad files"})


def _as_torchrun(monkeypatch, job: str, attempt: int) -> None:
    """This process as rank 0 of a one-process torchrun job."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", job)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(attempt))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def _live_run(tmp_path):
    """A run folder that the live job uses, with the record of the error its first attempt ended on."""
    run = tmp_path / "run"
    run.mkdir()
    (run / FATAL_FILE).write_text(LIVE_RECORD + "\n")
    return run


class FailingToyTask(ToyTask):
    def train_step(self, model, batch):
        raise XlsrError("data/en/train.jsonl: 12 of 40 files unreadable (30% > max_bad_share 5%)")


def test_a_job_refused_the_lock_leaves_the_live_jobs_record_as_it_was(tmp_path, monkeypatch):
    run = _live_run(tmp_path)
    _as_torchrun(monkeypatch, "second-job", 0)
    with folder_lock(run, "busy"):  # the live job
        with pytest.raises(XlsrError, match=f"^{run}: another run is using it"):
            Trainer(_cfg(run, max_updates=2, valid_every=0, save_every=2), ToyTask()).fit()
        assert (run / FATAL_FILE).read_text() == LIVE_RECORD + "\n"  # not removed, not replaced by the refusal
        assert sorted(p.name for p in run.iterdir()) == [".lock", FATAL_FILE]


def test_the_first_attempt_of_a_job_that_holds_the_folder_removes_an_earlier_jobs_record(tmp_path, monkeypatch):
    run = _live_run(tmp_path)  # the earlier job has ended
    _as_torchrun(monkeypatch, "next-job", 0)
    Trainer(_cfg(run, max_updates=2, valid_every=0, save_every=2), ToyTask()).fit()
    assert not (run / FATAL_FILE).exists()
    assert os.readlink(run / "checkpoints" / "last") == "update_0000002"


def test_a_job_that_holds_the_folder_records_its_error_for_its_restarts(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _as_torchrun(monkeypatch, "this-job", 0)
    with pytest.raises(XlsrError, match="max_bad_share"):
        Trainer(_cfg(run, max_updates=2, valid_every=0, save_every=2), FailingToyTask()).fit()
    record = json.loads((run / FATAL_FILE).read_text())
    assert (record["job"], record["attempt"], record["rank"]) == ("this-job", 0, 0)
    assert record["message"].startswith("data/en/train.jsonl: 12 of 40 files unreadable")
    # its restarted attempt stops on it before training, and leaves it for the next restart
    _as_torchrun(monkeypatch, "this-job", 1)
    with pytest.raises(XlsrError, match="restarting cannot help, so attempt 1 stops too"):
        Trainer(_cfg(run, max_updates=2, valid_every=0, save_every=2), ToyTask()).fit()
    assert json.loads((run / FATAL_FILE).read_text()) == record


class RefusedSetupTask(ToyTask):
    """Rank 1 meets an error of its own in setup (as a second job's config refused by the run-folder guard would)."""

    def setup(self, info):
        super().setup(info)
        if info.rank == 1:
            raise XlsrError("rank 1's own error in setup")


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      TORCHELASTIC_RUN_ID="second-job", TORCHELASTIC_RESTART_COUNT="0")
    import torch

    torch.set_num_threads(1)
    try:
        Trainer(run_config(out), RefusedSetupTask()).fit()
    except XlsrError as exc:
        print(f"xlsr: error: {exc}", file=sys.stderr)
        sys.exit(2)


def test_no_rank_of_a_refused_job_writes_into_the_live_jobs_folder(tmp_path):
    run = _live_run(tmp_path)
    with folder_lock(run, "busy"):  # the live job
        codes, _ = _ranks.wait(_ranks.start(_rank, (_ranks.free_ports(1)[0], str(run))))
        assert codes[0] == 2 and codes[1] != 0  # every rank of the refused job ends
        assert (run / FATAL_FILE).read_text() == LIVE_RECORD + "\n"
        assert sorted(p.name for p in run.iterdir()) == [".lock", FATAL_FILE]
