"""Where the error of a data worker's death may be raised in the main thread (worker_crash.defer_worker_deaths).

PyTorch raises it from its SIGCHLD handler, at whatever step the main thread is on. Raised inside a queue's put just
after the put took its lock, it left that lock held, and PyTorch's own put as it stopped the workers waited forever
(a test run hung so). The error is raised only in DataLoader's poll of its data queue; a death seen elsewhere in the
wait for a batch is said again a moment later, in the poll."""

import os
import signal
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from xlsr.data.worker_crash import defer_worker_deaths, waiting_for_batch


class _DiesWhenTold(Dataset):
    """A worker decoding item 0 waits for file `go`, then a moment (`delay`), then dies by SIGSEGV."""

    def __init__(self, go, delay: float) -> None:
        self.go, self.delay = go, delay

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        if index == 0:
            while not os.path.exists(self.go):
                time.sleep(0.01)
            time.sleep(self.delay)
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
        return torch.zeros(1)


def _ended(pid: int) -> bool:
    """Whether process `pid` has ended and is not yet waited for (a zombie), seen without waiting for it: a wait
    would take its status from PyTorch's handler, which would then find no death."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def _iterator(tmp_path, delay: float):
    # the loaders' DataLoader timeout (decode_timeout): PyTorch's own check of its workers comes only once it passes
    it = iter(DataLoader(_DiesWhenTold(str(tmp_path / "go"), delay), num_workers=1, batch_size=None, timeout=30))
    defer_worker_deaths()  # as the loaders do, once PyTorch's handler is there
    return it


def test_a_death_seen_outside_the_poll_raises_nothing_there_and_is_said_again_in_the_poll(tmp_path):
    it = _iterator(tmp_path, delay=0.0)
    with waiting_for_batch(it):
        (tmp_path / "go").touch()
        # the main thread busy in Python (as in a queue's put) when SIGCHLD comes: no error may land here
        deadline = time.monotonic() + 10
        while not _ended(it._workers[0].pid) and time.monotonic() < deadline:
            sum(range(100))
        calm = time.monotonic() + 0.3  # the handler runs at one of these steps
        while time.monotonic() < calm:
            sum(range(100))
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            next(it)  # the death said again once the main thread is in the poll
        assert time.monotonic() - start < 3  # not DataLoader's own check, 30 s on
    it._shutdown_workers()  # and nothing is left locked: stopping the workers returns


def test_a_death_during_the_poll_raises_at_once(tmp_path):
    it = _iterator(tmp_path, delay=0.5)  # dies once the main thread is asleep in next()
    with waiting_for_batch(it):
        (tmp_path / "go").touch()
        start = time.monotonic()
        with pytest.raises(RuntimeError):
            next(it)
        assert time.monotonic() - start < 3  # from the handler, not DataLoader's 5 s check
    it._shutdown_workers()
