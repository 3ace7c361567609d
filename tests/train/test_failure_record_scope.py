"""What RUN/fatal_error.json stops, and what it records: a restarted torchrun attempt stops only on an XlsrError that
an earlier attempt of its own job recorded, and a crash that is no XlsrError (one a restart may fix) is not recorded.

torchrun is played by its environment variables, as in test_failure_record_belongs_to_the_lock_holder.py."""

import json
import os
import subprocess
import sys

import pytest

from xlsr import atomic
from xlsr.errors import XlsrError
from xlsr.train import elastic
from xlsr.train.elastic import FATAL_FILE
from xlsr.train.trainer import Trainer

from ._toy import ToyTask
from .test_failure_record_belongs_to_the_lock_holder import FailingToyTask, _as_torchrun
from .test_trainer import _cfg

pytest.importorskip("fcntl")  # no run-folder lock where there is no flock (Windows)


def _fit(run, max_updates: int = 2, task=None):
    return Trainer(_cfg(run, max_updates=max_updates, valid_every=0, save_every=2), task or ToyTask()).fit()


@pytest.mark.parametrize("job, attempt", [("earlier-job", 0), ("earlier-job", 3), ("this-job", 1), ("this-job", 2)],
                         ids=["other-job", "other-job-later-attempt", "this-attempt", "a-later-attempt"])
def test_a_restarted_attempt_trains_unless_an_earlier_attempt_of_its_own_job_recorded_an_error(tmp_path, monkeypatch,
                                                                                            job, attempt):
    run = tmp_path / "run"
    run.mkdir()
    record = {"job": job, "attempt": attempt, "rank": 1, "message": "data/x.jsonl: too many bad files"}
    (run / FATAL_FILE).write_text(json.dumps(record) + "\n")
    _as_torchrun(monkeypatch, "this-job", 1)  # a restart after a crash (SIGKILL, a lost node): it trains
    _fit(run)
    assert os.readlink(run / "checkpoints" / "last") == "update_0000002"


class CrashingToyTask(ToyTask):
    def train_step(self, model, batch):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_crash_that_is_no_xlsr_error_is_not_recorded_and_the_restart_trains(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _as_torchrun(monkeypatch, "this-job", 0)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _fit(run, task=CrashingToyTask())
    assert not (run / FATAL_FILE).exists()  # a restart may fix it: torchrun's --max-restarts is for this
    _as_torchrun(monkeypatch, "this-job", 1)
    _fit(run)
    assert os.readlink(run / "checkpoints" / "last") == "update_0000002"


def test_an_xlsr_error_of_the_first_attempt_stops_every_later_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _as_torchrun(monkeypatch, "this-job", 0)
    with pytest.raises(XlsrError, match="max_bad_share"):
        _fit(run, task=FailingToyTask())
    for attempt in (1, 2):
        _as_torchrun(monkeypatch, "this-job", attempt)
        with pytest.raises(XlsrError, match=f"attempt 0 of this torchrun job ended on it; restarting cannot help, "
                                            f"so attempt {attempt} stops too"):
            _fit(run)
    assert not (run / "checkpoints").exists()


def test_the_other_ranks_of_a_stopped_attempt_exit_quietly_with_the_same_status(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _as_torchrun(monkeypatch, "this-job", 0)
    with pytest.raises(XlsrError):
        _fit(run, task=FailingToyTask())
    _as_torchrun(monkeypatch, "this-job", 1)
    monkeypatch.setenv("RANK", "1")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        _fit(run)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == ""  # rank 0 alone prints the error line
    assert not (run / "checkpoints").exists()


@pytest.mark.skipif(atomic._machine() is None, reason="pids are judged only where the machine can be named")
def test_a_record_left_half_written_by_a_killed_rank_is_cleared_by_the_next_record(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = run / f".{FATAL_FILE}.{int(dead.stdout)}-{atomic._machine()}.abcd1234.tmp"
    left.write_text('{"job": "this-j')  # a rank killed while writing its record
    elastic._write_record(run / FATAL_FILE, {"job": "this-job", "attempt": 0, "rank": 0, "message": "x: bad"})
    assert sorted(p.name for p in run.iterdir()) == [FATAL_FILE]
    assert json.loads((run / FATAL_FILE).read_text())["message"] == "x: bad"
