"""atomic.write_file's temporary files: one a killed writer left is removed by the next write of the same target,
one a live writer (another process, another thread) is still filling is never touched; and the umask that gives
written files their permissions is read without changing it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from _atomic_writers import dead_pid, finish, hidden, killed_writer, live_writer, needs_machine

from xlsr import atomic
from xlsr.atomic import write_text


@needs_machine
def test_a_killed_writers_temporary_is_removed_by_the_next_write_of_the_target(tmp_path):
    out = tmp_path / "report.json"
    left = killed_writer(out, "file")
    assert hidden(tmp_path) == {left} and (tmp_path / left).read_text() == "child"  # what a kill -9 leaves
    write_text(out, "mine")
    assert hidden(tmp_path) == set() and out.read_text() == "mine"


@needs_machine
def test_a_live_writer_in_another_process_keeps_its_temporary_and_finishes(tmp_path):
    out = tmp_path / "report.json"
    with live_writer(out, "file") as (child, filling):
        write_text(out, "mine")  # meanwhile: the child's pid is running, so its file is kept
        assert hidden(tmp_path) == {filling}
        assert finish(child) == 0
    assert hidden(tmp_path) == set() and out.read_text() == "child"  # its rename found its file


@needs_machine
def test_a_live_writer_in_another_thread_keeps_its_temporary_and_finishes(tmp_path):
    out = tmp_path / "report.json"
    filled, go = threading.Event(), threading.Event()

    def slow(tmp: Path) -> None:
        tmp.write_text("thread")
        filled.set()
        go.wait(timeout=30)

    thread = threading.Thread(target=atomic.write_file, args=(out, slow))
    thread.start()
    try:
        assert filled.wait(timeout=30)
        (filling,) = hidden(tmp_path)
        write_text(out, "mine")
        assert hidden(tmp_path) == {filling}
    finally:
        go.set()
        thread.join(timeout=30)
    assert hidden(tmp_path) == set() and out.read_text() == "thread"


@needs_machine
def test_only_this_targets_files_of_dead_writers_on_this_machine_are_removed(tmp_path):
    dead, live, machine = dead_pid(), os.getppid(), atomic._machine()
    other_machine = "0123abcd" if machine != "0123abcd" else "4567cdef"
    names = {
        f".out.txt.{dead}-{machine}.a1b2c3d4.tmp": False,  # a killed writer's: removed
        f".out.txt.{live}-{machine}.e5f6g7h8.tmp": True,  # a running process's
        f".out.txt.{os.getpid()}-{machine}.i9j0k1l2.tmp": True,  # another thread of this process
        f".out.txt.{dead}-{other_machine}.m3n4o5p6.tmp": True,  # another host or container: its pid is not ours
        ".out.txt.q7r8s9t0.tmp": True,  # an earlier version's name: whose it was is unknown
        f".out.txt.5.{dead}-{machine}.u1v2w3x4.tmp": True,  # the target out.txt.5's, not out.txt's
    }
    for name in names:
        (tmp_path / name).write_text("x")
    write_text(tmp_path / "out.txt", "y")
    assert hidden(tmp_path) == {n for n, kept in names.items() if kept}
    assert (tmp_path / "out.txt").read_text() == "y"


# ------------------------------------------------------------------------------------------------ the umask
@pytest.fixture
def umask_027():
    real = os.umask  # a test may replace it
    old = real(0o027)
    yield
    real(old)


@pytest.mark.usefixtures("umask_027")
def test_the_umask_is_read_without_setting_it(tmp_path, monkeypatch):
    status = Path("/proc/self/status")
    if not status.is_file() or "\nUmask:" not in status.read_text():
        pytest.skip("this system does not show the umask in /proc/self/status")

    def no_umask(mask):
        raise AssertionError("os.umask called: for a moment other threads would make files with another umask")

    monkeypatch.setattr(os, "umask", no_umask)
    assert atomic._umask() == 0o027
    write_text(tmp_path / "notes.txt", "x")
    assert stat.S_IMODE((tmp_path / "notes.txt").stat().st_mode) == 0o640


@pytest.mark.usefixtures("umask_027")
def test_without_proc_the_umask_is_set_back_as_it_was(monkeypatch):
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    assert atomic._umask() == 0o027
    monkeypatch.undo()
    assert os.umask(0o027) == 0o027  # left as it was

