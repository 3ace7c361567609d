"""atomic.write_dir's promise after a crash: every file and folder of the new folder is on disk before the rename
that gives it its name, and that rename is on disk before write_dir returns; a replaced folder leaves nothing
behind; a file whose fsync fails is never taken as saved. And write_file keeps the temporary file of a writer that
runs as another user (one this process may not signal)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from xlsr import atomic
from xlsr.atomic import write_dir, write_text


def _fill(text: str):
    def write(folder: Path) -> None:
        (folder / "weights.bin").write_text(text)
        (folder / "sub").mkdir()
        (folder / "sub" / "config.json").write_text("{}")
    return write


def _record(monkeypatch) -> list[tuple]:
    """("fsync", path) and ("rename", src, dst) in the order write_dir does them (each still done for real)."""
    events, real_fsync, real_replace = [], atomic.fsync, os.replace

    def fsync(path):
        events.append(("fsync", Path(path)))
        real_fsync(path)

    def replace(src, dst):
        events.append(("rename", Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_the_new_folder_is_on_disk_before_its_rename_and_the_rename_before_the_return(tmp_path, monkeypatch,
                                                                                       existing):
    dst = tmp_path / "ckpt"
    if existing:
        write_dir(dst, _fill("old"))
    events = _record(monkeypatch)
    write_dir(dst, _fill("new"))
    (at,) = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == dst]
    staged = events[at][1]
    synced_before = {e[1] for e in events[:at] if e[0] == "fsync"}
    assert {staged, staged / "weights.bin", staged / "sub", staged / "sub" / "config.json"} <= synced_before
    assert ("fsync", tmp_path) in events[at + 1:]  # the folder holding the new name: the rename itself
    assert (dst / "weights.bin").read_text() == "new"


def test_a_replaced_folder_leaves_nothing_beside_the_new_one(tmp_path):
    dst = tmp_path / "ckpt"
    for text in ("first", "second", "third"):
        write_dir(dst, _fill(text))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no set-aside `.ckpt.old-*` kept
    assert (dst / "weights.bin").read_text() == "third"


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP, errno.EACCES])
def test_a_files_fsync_failing_with_what_folders_may_answer_still_fails_the_write(tmp_path, monkeypatch, code):
    real = os.fsync

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))  # the file's data may not be on disk
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as caught:
        write_dir(tmp_path / "ckpt", _fill("x"))
    assert caught.value.errno == code
    assert str(caught.value.filename).startswith(str(tmp_path / "ckpt" / ""))  # names one of its files
    assert list(tmp_path.iterdir()) == []  # never renamed into place as if saved


@pytest.mark.skipif(atomic._machine() is None or os.name != "posix",
                    reason="needs Linux's boot id and pid namespace to tell whose pids are whose")
def test_the_temporary_of_a_writer_this_process_may_not_signal_is_kept(tmp_path, monkeypatch):
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    other_user, dead = done.pid, 2**22 + 1  # above Linux's largest pid_max: no process has it
    real_kill = os.kill

    def kill(pid, sig):
        if pid == other_user:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))  # it runs, as another user
        return real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    machine = atomic._machine()
    theirs, dead_ones = f".out.txt.{other_user}-{machine}.a1b2c3d4.tmp", f".out.txt.{dead}-{machine}.e5f6g7h8.tmp"
    for name in (theirs, dead_ones):
        (tmp_path / name).write_text("x")
    write_text(tmp_path / "out.txt", "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs, "out.txt"]


def test_the_old_folder_is_not_deleted_before_the_new_one_has_its_name(tmp_path, monkeypatch):
    dst = tmp_path / "ckpt"
    write_dir(dst, _fill("old"))
    real = os.replace

    def replace(src, to):
        if Path(to) == dst:  # the new folder's rename fails (as a kill at that moment would stop it)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, to)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        write_dir(dst, _fill("new"))
    kept = [p.read_text() for p in tmp_path.rglob("weights.bin")]
    assert kept == ["old"]  # set aside, not deleted: the only copy until a new one is in place


def test_a_file_that_cannot_be_opened_to_be_synced_is_an_error_naming_it(tmp_path, monkeypatch):
    target = tmp_path / "ckpt" / "weights.bin"
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if Path(path).name == "weights.bin" and flags == os.O_RDONLY:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(OSError) as caught:
        write_dir(target.parent, _fill("x"))  # only a folder may be skipped where it cannot be opened
    assert caught.value.errno == errno.EIO and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
