"""The demo's side-by-side fine-tuning workers (`--workers N`, the default on a multi-core CPU) as a killed demo leaves
them: a demo killed outright (SIGKILL, the OOM killer) cannot shut its pool down, and each worker held ~0.6 GB while it
waited, for ever, for its next job. A worker's setup now ends it once its parent is gone."""

import os
import time
from pathlib import Path

import pytest

import xlsr.demo.finetuning as finetuning
from xlsr.demo import DemoSettings


class Captured(Exception):
    pass


def pool_setup(monkeypatch, tmp_path):
    """The initializer and its arguments that the side-by-side stage gives its worker processes."""
    seen = {}

    def fake_pool(workers, mp_context=None, initializer=None, initargs=()):
        seen.update(initializer=initializer, initargs=initargs)
        raise Captured

    monkeypatch.setattr(finetuning, "ProcessPoolExecutor", fake_pool)
    jobs = [("multilingual", "rel/m", 1), ("multilingual", "rel/m", 2)]
    with pytest.raises(Captured):
        finetuning._finetune_side_by_side(jobs, 2, DemoSettings.quick(), tmp_path / "corpus", tmp_path / "finetune",
                                          [], None)
    return seen["initializer"], seen["initargs"]


def ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "fork"), reason="needs fork and /proc")
def test_a_worker_ends_itself_when_the_demo_that_started_it_is_killed(monkeypatch, tmp_path):
    initializer, initargs = pool_setup(monkeypatch, tmp_path)
    read, write = os.pipe()
    demo = os.fork()
    if demo == 0:  # the demo: starts a worker, then dies at once without a word to it (as SIGKILL leaves it)
        worker = os.fork()
        if worker == 0:  # the worker: its setup, then waiting for a job that never comes
            try:
                initializer(*initargs)
                time.sleep(60)
            finally:
                os._exit(0)
        os.write(write, f"{worker}\n".encode())
        os._exit(0)
    os.close(write)
    worker = int(os.read(read, 64).decode())
    os.close(read)
    os.waitpid(demo, 0)
    try:
        deadline = time.monotonic() + 20  # a bound on the wait, not a timing: the watch looks every 0.5 s
        while not ended(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ended(worker), "the orphaned worker is still waiting for jobs"
    finally:
        if not ended(worker):
            os.kill(worker, 9)
