"""Writers of atomic.write_dir and write_file in another process, for the tests of what killed and live writers
leave (a module of its own: `conftest` is not importable by name)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from xlsr import atomic

needs_machine = pytest.mark.skipif(atomic._machine() is None,
                                   reason="needs Linux's boot id and pid namespace to tell whose pids are whose")

# A writer in another process: write_dir (or write_file) of OUT fills its temporary, prints its name, then kills
# itself (kill -9: no cleanup runs) or waits for a line on stdin before its rename.
_CHILD = """
import os, signal, sys
from pathlib import Path
from xlsr.atomic import write_dir, write_file

def write(tmp):
    (tmp / "weights.bin" if sys.argv[2] == "dir" else tmp).write_text("child")
    print(tmp.name, flush=True)
    if sys.argv[3] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()

(write_dir if sys.argv[2] == "dir" else write_file)(Path(sys.argv[1]), write)
"""


def writer(out: Path, kind: str, how: str) -> subprocess.Popen:
    """A writer of `out` (`kind` "dir" or "file") that, once its temporary is filled, kills itself ("die") or waits
    ("wait") for a line on stdin before its rename."""
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(out), kind, how], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def killed_writer(out: Path, kind: str = "dir") -> str:
    """The name of the temporary a writer of `out` killed midway leaves."""
    child = writer(out, kind, "die")
    left = child.stdout.readline().strip()
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert (out.parent / left).exists()
    return left


@contextmanager
def live_writer(out: Path, kind: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A writer of `out` waiting before its rename, and the name of the temporary it filled; killed on leaving if
    `finish` has not let it end."""
    child = writer(out, kind, "wait")
    try:
        yield child, child.stdout.readline().strip()
    finally:
        child.kill()
        child.wait()


def finish(child: subprocess.Popen) -> int:
    """Let a live writer go on to its rename; its exit status."""
    child.stdin.write("go\n")
    child.stdin.flush()
    return child.wait(timeout=30)


def hidden(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(".")}


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid
