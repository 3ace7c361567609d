"""One writer at a time in a folder (a training run, an import's output): an exclusive flock on FOLDER/.lock.

The kernel drops a flock when its process ends, however it ends, so a killed run never leaves its folder locked
and the rerun resumes (the file a kill leaves is harmless: only the flock counts). A writer that ends normally
removes the file, so that a refused command leaves the folder as it found it. The lock is advisory and best
effort: where the file cannot be made or locked (a read-only folder, a filesystem without flock, Windows without
fcntl) the command goes on unlocked and meets its usual errors; only a lock held by another process refuses it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xlsr.errors import XlsrError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".lock"


@contextmanager
def folder_lock(folder: str | Path, busy: str) -> Iterator[None]:
    """Hold FOLDER/.lock (making the folder and its missing parents if needed, and removing those again that are left
    empty) while inside; `XlsrError("FOLDER: <busy>")` when another process holds it."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # the folder and its missing parents, deepest first
    fd = _acquire(folder, busy) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            (folder / LOCK_FILE).unlink(missing_ok=True)  # while still held: see _acquire for a process waiting on it
            os.close(fd)
            for path in made:  # made only to hold the lock, and left empty (a refused run wrote nothing): gone again
                try:
                    path.rmdir()
                except OSError:  # not empty: something was written there
                    break


def _acquire(folder: Path, busy: str) -> int | None:
    """The descriptor of FOLDER/.lock, locked; None where locking is impossible (see the module docstring)."""
    path = folder / LOCK_FILE
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise XlsrError(f"{folder}: {busy}{_holder(path)}") from None
        except OSError:
            os.close(fd)
            return None
        # The holder before us removes the file before it lets go: a lock on the removed file locks nothing that a
        # newcomer would see, so take the file that is there now instead.
        try:
            there = os.stat(path)
        except FileNotFoundError:
            there = None
        mine = os.fstat(fd)
        if there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())  # for the message of a process refused
            except OSError:
                pass  # a full disk: the lock holds all the same
            return fd
        os.close(fd)


def _holder(path: Path) -> str:
    """' (process N holds FOLDER/.lock)' from the pid its holder wrote, '' if unreadable."""
    try:
        pid = int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return ""
    return f" (process {pid} holds {path})"
