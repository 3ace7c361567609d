"""Files and folders that readers never see half written: each is written beside its target, then renamed over it.

Folders (checkpoints) are also fsynced before the rename, so that after a crash the new name points at
data that is on disk; single text files are not (they are small reports a rerun rewrites).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def write_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically: a temporary file in the same folder, then a rename."""
    return write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data, *, indent: int | None = 2) -> Path:
    """Write `data` as JSON (non-ASCII kept, trailing newline) atomically."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write one JSON object per line atomically."""
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def fsync(path: str | Path) -> None:
    """Flush a file, or a folder's entries (so that renames inside it survive a crash), to disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some filesystems cannot open folders; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass  # and some cannot fsync them
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """fsync every file and folder under `path`, then `path` itself."""
    for p in sorted(Path(path).rglob("*")):
        fsync(p)
    fsync(path)


def write_dir(dst: str | Path, write: Callable[[Path], object], *, staging: str | Path | None = None) -> Path:
    """Call `write(folder)` to fill a fresh folder beside `dst`, fsync it, then rename it to `dst`.

    An existing `dst` is replaced, and kept (renamed aside) until the new one is in place. The fresh
    folder is `staging` if given (replaced if present; the caller removes stale ones, so it is left as it
    is when `write` fails, as a kill would leave it), else a new unique name, removed on any failure.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if staging is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    else:
        tmp = Path(staging)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    try:
        write(tmp)
        fsync_tree(tmp)
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
            os.replace(dst, old / dst.name)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
        fsync(dst.parent)
    except BaseException:
        if staging is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst
