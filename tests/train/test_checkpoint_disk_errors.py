"""A checkpoint that could not be written (a full disk, data that never reached the disk) stops the run with an
error naming it, and the earlier checkpoints stay: never trusted as saved, never a reason to prune."""

import errno
import os
import stat

import pytest
import torch

from xlsr.train import checkpoint as ckpt
from xlsr.train.trainer import Trainer

from ._toy import ToyTask
from .test_trainer import _cfg


def test_a_file_fsync_error_stops_the_run_and_keeps_the_earlier_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    Trainer(_cfg(run, max_updates=2, valid_every=0, save_every=2, keep_last=1), ToyTask()).fit()
    real = os.fsync

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))  # a write-back error: the data is not on disk
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as caught:
        Trainer(_cfg(run, max_updates=4, valid_every=0, save_every=2, keep_last=1), ToyTask()).fit()
    assert caught.value.errno == errno.EIO
    assert str(caught.value.filename).startswith(str(run / "checkpoints" / "update_0000004"))
    root = run / "checkpoints"
    assert [p.name for _, p in ckpt.update_dirs(root)] == ["update_0000002"]  # not pruned for a checkpoint not on disk
    assert os.readlink(root / "last") == "update_0000002"


def test_a_full_disk_in_torch_save_is_an_oserror_naming_the_training_state(tmp_path, monkeypatch):
    def full(obj, f, *args, **kwargs):  # torch's zip writer on a full disk, as it raises it
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    task = ToyTask()
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as caught:
        ckpt.write_checkpoint(tmp_path, 3, lambda d: task.save_model(d, task.build_model()), {"update": 3})
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "update_0000003" / ckpt.TRAINER_FILE)
    assert not (tmp_path / "update_0000003").exists()
