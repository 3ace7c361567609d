"""Files and folders that readers never see half written: each is written beside its target, then renamed over it.

Folders (checkpoints) are also fsynced before the rename, so that after a crash the new name points at
data that is on disk; single text files are not (they are small reports a rerun rewrites).

A write that fails (a full disk, a read-only folder) raises its OSError naming the file the caller asked for, not
the hidden temporary one nor nothing at all (a failed write() or close() names no file): `xlsr` prints that line.
The temporary names are unique, so two processes writing the same target never write into one temporary file, and
their permissions are those of a file or folder made as usual (umask), not the private ones of `tempfile`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

# What fsync of a folder may answer on filesystems that cannot sync folders (the renames in it are atomic all the
# same); a file's fsync failing means its data may not be on disk, so that is always raised.
_FOLDER_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EACCES,
                             errno.EPERM}


def write_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~_umask())
        write(tmp)
        tmp.replace(path)
    except OSError as exc:
        _naming(exc, path, tmp)
        raise
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


def save_torch(obj, path: str | Path) -> None:
    """`torch.save(obj, path)`, a failed write raised as the OSError that caused it, naming `path`.

    torch reports a full disk as a RuntimeError from its zip writer ("unexpected pos ...") that names neither the
    file nor the reason; written through a Python file object, the reason is the OSError that error wraps.
    """
    import torch  # lazy: the text writers above must not import torch

    try:
        with open(path, "wb") as f:
            torch.save(obj, f)
    except OSError as exc:  # from flushing the file at its close
        _naming(exc, Path(path))
        raise
    except RuntimeError as exc:
        cause = next((e for e in _chain(exc) if isinstance(e, OSError)), None)
        if cause is None and "inline_container" not in str(exc):
            raise  # not a write that failed
        code = cause.errno if cause is not None and cause.errno else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from exc


def fsync(path: str | Path) -> None:
    """Flush a file, or a folder's entries (so that renames inside it survive a crash), to disk; an OSError naming
    `path` when a file's data did not reach the disk."""
    folder = os.path.isdir(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        if folder:
            return  # some filesystems cannot open folders; the rename is still atomic there
        _naming(exc, Path(path))
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (folder and exc.errno in _FOLDER_FSYNC_UNSUPPORTED):
            _naming(exc, Path(path))
            raise
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
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if staging is None:
            tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
            tmp.chmod(0o777 & ~_umask())  # mkdtemp's folder is private, and the rename would keep it so
        else:
            tmp = Path(staging)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
    except OSError as exc:
        raise _naming(exc, dst) from None
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
    except BaseException as exc:
        if staging is None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            _naming(exc, dst, tmp)
        raise
    return dst


def _naming(exc: OSError, dst: Path, tmp: Path | None = None) -> OSError:
    """`exc`, changed to name what the caller writes: `dst` for no file or a temporary one of `dst`, `dst/x` for
    `tmp/x`; a file of the caller's own (a source it read) keeps its name."""
    if exc.errno is None:
        return exc  # not from the system (OSError("message")): a file name would turn its text into "[Errno None]"
    name = os.fsdecode(exc.filename) if isinstance(exc.filename, bytes | os.PathLike) else exc.filename
    if name is None or name == str(tmp) or _temporary_of(Path(name), dst):
        exc.filename = str(dst)
    elif tmp is not None and name.startswith(str(tmp) + os.sep):
        exc.filename = str(dst / os.path.relpath(name, tmp))
    else:
        return exc
    exc.filename2 = None
    return exc


def _temporary_of(path: Path, dst: Path) -> bool:
    """Whether `path` is one of the hidden names beside `dst` that the writers above make for it."""
    return path.parent == dst.parent and path.name.startswith(f".{dst.name}.")


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, innermost last."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
