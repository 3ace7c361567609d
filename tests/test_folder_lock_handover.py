"""folder_lock: one holder at a time, also in the moment one holder lets go as another arrives; the lock file and a
folder made only to hold it are gone afterwards, a folder that was there stays."""

from __future__ import annotations

import os
import types

import pytest

from xlsr import folder_lock as folder_lock_module
from xlsr.errors import XlsrError
from xlsr.folder_lock import LOCK_FILE, folder_lock

fcntl = pytest.importorskip("fcntl")  # no folder lock where there is no flock (Windows)


def _held_by_someone(folder) -> bool:
    """Whether a newcomer (another open of FOLDER/.lock) is refused the lock."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with folder_lock(tmp_path, "busy"):
        with pytest.raises(XlsrError, match=rf"^{tmp_path}: busy \(process {os.getpid()} holds "):
            with folder_lock(tmp_path, "busy"):
                pass
        assert _held_by_someone(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()
    with folder_lock(tmp_path, "busy"):  # free again
        pass


def test_a_lock_taken_on_a_file_its_holder_removed_meanwhile_is_taken_again_on_the_new_file(tmp_path, monkeypatch):
    """A newcomer opened FOLDER/.lock, then its holder removed the file and let go: the newcomer's flock succeeds on
    a file no one else will open, so it must take the lock on the file that is there now."""
    real = fcntl.flock
    calls = []

    def flock(fd, op):
        calls.append(op)
        if len(calls) == 1:
            os.unlink(tmp_path / LOCK_FILE)  # the holder before us leaves between our open and our flock
        return real(fd, op)

    monkeypatch.setattr(folder_lock_module, "fcntl", types.SimpleNamespace(
        flock=flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB, LOCK_SH=fcntl.LOCK_SH))
    with folder_lock(tmp_path, "busy"):
        assert (tmp_path / LOCK_FILE).exists()
        assert _held_by_someone(tmp_path)  # a third process would be refused: the lock is on the file there now


def test_the_file_is_removed_before_the_lock_is_let_go(tmp_path, monkeypatch):
    """Whoever gets the lock the moment it is let go must hold it on a file that newcomers also open."""
    real_close, outer_fd, newcomer = os.close, [], []

    def close(fd):
        real_close(fd)
        if not newcomer and outer_fd and fd == outer_fd[0]:
            newcomer.append(folder_lock(tmp_path, "busy"))  # a process that waited takes it at once
            newcomer[0].__enter__()

    real_open = os.open

    def open_(path, flags, *args):
        fd = real_open(path, flags, *args)
        if not outer_fd:
            outer_fd.append(fd)
        return fd

    monkeypatch.setattr(folder_lock_module, "os", types.SimpleNamespace(
        open=open_, close=close, O_RDWR=os.O_RDWR, O_CREAT=os.O_CREAT, stat=os.stat, fstat=os.fstat,
        ftruncate=os.ftruncate, write=os.write, getpid=os.getpid))
    with folder_lock(tmp_path, "busy"):
        pass
    monkeypatch.undo()
    assert newcomer, "the lock was never let go"
    try:
        assert _held_by_someone(tmp_path)  # the newcomer holds it on the file a third one opens
    finally:
        newcomer[0].__exit__(None, None, None)


def test_a_folder_made_for_the_lock_is_removed_and_one_that_was_there_stays(tmp_path):
    made = tmp_path / "new"
    with folder_lock(made, "busy"):
        assert made.is_dir()
    assert not made.exists()  # a refused or failed run leaves nothing
    there = tmp_path / "there"
    there.mkdir()
    with folder_lock(there, "busy"):
        pass
    assert there.is_dir() and list(there.iterdir()) == []
    with folder_lock(made, "busy"):
        (made / "config.yaml").write_text("x")
    assert [p.name for p in made.iterdir()] == ["config.yaml"]  # what the run wrote stays, the lock file does not


def test_the_missing_parents_made_for_the_lock_are_removed_too(tmp_path):
    # `--out runs/new/pt` with neither runs/ nor runs/new/: a refused run leaves none of the three
    with folder_lock(tmp_path / "runs" / "new" / "pt", "busy"):
        pass
    assert list(tmp_path.iterdir()) == []
    # a parent that holds something (written meanwhile) stays, with what it holds
    with folder_lock(tmp_path / "runs" / "new" / "pt", "busy"):
        (tmp_path / "runs" / "notes.txt").write_text("x")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes.txt"]
