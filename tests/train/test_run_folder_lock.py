"""One training run at a time in a run folder: a second one is refused in one line, a killed one blocks nothing."""

import os

import pytest

from xlsr.errors import XlsrError
from xlsr.train.trainer import Trainer

from ._toy import ToyTask
from .test_trainer import _cfg

fcntl = pytest.importorskip("fcntl")  # no run-folder lock where there is no flock (Windows)


class LockProbe(ToyTask):
    """A ToyTask that tries, in its first step, what a second run into the same folder would: lock RUN/.lock."""

    def __init__(self, run):
        super().__init__()
        self.run, self.locked_by_other = run, None

    def train_step(self, model, batch):
        if self.locked_by_other is None:
            fd = os.open(self.run / ".lock", os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.locked_by_other = False
            except BlockingIOError:
                self.locked_by_other = True
            finally:
                os.close(fd)
        return super().train_step(model, batch)


def test_a_run_holds_its_folder_and_lets_go_at_the_end(tmp_path):
    task = LockProbe(tmp_path / "run")
    Trainer(_cfg(tmp_path / "run", max_updates=2, valid_every=0, save_every=2), task).fit()
    assert task.locked_by_other is True  # held while training
    assert not (tmp_path / "run" / ".lock").exists()  # and removed after: the folder holds only the run's files


def test_a_second_run_into_a_busy_folder_is_refused_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a first run holds it
    try:
        with pytest.raises(XlsrError, match=f"^{run}: another run is using it"):
            Trainer(_cfg(run, max_updates=2, valid_every=0, save_every=2), ToyTask()).fit()
    finally:
        os.close(fd)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # no config.yaml, log or checkpoint of its own


def test_the_lock_file_of_a_killed_run_does_not_block_the_rerun(tmp_path):
    run = tmp_path / "run"
    Trainer(_cfg(run, max_updates=2, valid_every=0, save_every=2), ToyTask()).fit()
    (run / ".lock").write_text("12345\n")  # a kill leaves the file; the kernel let go of its flock
    Trainer(_cfg(run, max_updates=4, valid_every=0, save_every=2), ToyTask()).fit()  # resumes
    assert os.readlink(run / "checkpoints" / "last") == "update_0000004"
