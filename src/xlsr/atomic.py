"""Files and folders that readers never see half written: each is written beside its target, then renamed over it.

Folders (checkpoints) are also fsynced before the rename, so that after a crash the new name points at
data that is on disk; single text files are not (they are small reports a rerun rewrites).

A write that fails (a full disk, a read-only folder) raises its OSError naming the file the caller asked for, not
the hidden temporary one nor nothing at all (a failed write() or close() names no file): `xlsr` prints that line.
The temporary names are unique, so two processes writing the same target never write into one temporary file, and
their permissions are those of a file or folder made as usual (umask), not the private ones of `tempfile`.

A writer killed midway (kill -9, a lost machine) leaves its temporary file behind. write_file's temporary name says
who wrote it, `.NAME.<pid>-<machine>.XXXXXXXX.tmp`, where <machine> stands for the space the pid is counted in (this
boot of this kernel and its pid namespace, hashed). The next write_file of the same target removes those of its
temporaries whose machine is this one and whose pid is not running: a pid still running (another process, or
another thread of this one, writing the same target) keeps its file, and so does one written elsewhere (another host
on a shared folder, another container, an earlier boot), as no process here can tell whether that writer lives. A
reused pid keeps a dead writer's file until that process ends too. Where the machine cannot be known (not Linux) the
name holds only the pid and nothing is removed.

write_dir's fresh folder is named the same way, `.NAME.<pid>-<machine>.tmp-XXXXXXXX`, and so is the folder it sets an
existing NAME aside in until the new one is in place, `.NAME.<pid>-<machine>.old-XXXXXXXX`. The next write_dir of the
same target removes those of dead writers on this machine as above: their half-filled folders before it writes, a
folder they set aside only once its own NAME is in place (a writer killed between its two renames leaves no NAME, and
the old one set aside is then the only copy until a new one is in place).

A name may be at most 255 bytes long, and a temporary's is up to 34 bytes longer than its target's. Where NAME is
longer than 221 bytes, the temporary names hold its start and 16 hex digits of a hash of the whole instead of NAME
(`.START~HASH.<pid>-...`), so that they fit, and no other target's temporaries share that part.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

# What fsync of a folder may answer on filesystems that cannot sync folders (the renames in it are atomic all the
# same); a file's fsync failing means its data may not be on disk, so that is always raised.
_FOLDER_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EACCES,
                             errno.EPERM}


def write_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it over `path`; first the temporary
    files of earlier writers of `path` that were killed are removed (see the module docstring)."""
    path = Path(path)
    for name in _dead_writers(path, _FILE_WRITER):
        try:
            os.unlink(path.parent / name)
        except OSError:
            pass  # gone already (another writer cleaned it), or not ours to remove
    try:
        fd, name = tempfile.mkstemp(prefix=f".{_stem(path.name)}.{_writer()}.", suffix=".tmp", dir=path.parent)
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


def json_text(data, *, indent: int | None = None) -> str:
    """`data` as JSON: non-ASCII text as it is, unless some string holds a lone surrogate (a file name whose
    bytes are not UTF-8), which UTF-8 cannot encode; the text is then all \\u escapes. Replacing the surrogate
    (U+FFFD) instead would lose the name: no rerun could match it, nor any reader open the file."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=indent)
    return text


def json_line(record) -> str:
    """`record` as one JSON line (json_text)."""
    return json_text(record) + "\n"


def write_json(path: str | Path, data, *, indent: int | None = 2) -> Path:
    """Write `data` as JSON (json_text: non-ASCII kept, a non-UTF-8 file name escaped; trailing newline) atomically."""
    return write_text(path, json_text(data, indent=indent) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write one JSON object per line (json_line) atomically."""
    return write_text(path, "".join(json_line(r) for r in records))


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
    What killed writers of `dst` left is removed (see the module docstring).
    """
    dst = Path(dst)
    hidden, writer = f".{_stem(dst.name)}.", _writer()
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dead = _dead_writers(dst, _DIR_WRITER)
        set_aside = [name for name in dead if _DIR_WRITER.fullmatch(name[len(hidden):])["kind"] == "old"]
        for name in set(dead) - set(set_aside):
            shutil.rmtree(dst.parent / name, ignore_errors=True)
        if staging is None:
            tmp = Path(tempfile.mkdtemp(prefix=f"{hidden}{writer}.tmp-", dir=dst.parent))
            tmp.chmod(0o777 & ~_umask())  # mkdtemp's folder is private, and the rename would keep it so
        else:
            tmp = Path(staging)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
    except OSError as exc:  # a `staging` folder that cannot be made is named as `dst` too
        raise _naming(exc, dst, None if staging is None else Path(staging)) from None
    try:
        write(tmp)
        fsync_tree(tmp)
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{hidden}{writer}.old-", dir=dst.parent))
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
    for name in set_aside:  # now that the new `dst` is in place
        shutil.rmtree(dst.parent / name, ignore_errors=True)
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
    # absolute both: tempfile names its temporaries by absolute paths whatever folder it was given
    return Path(os.path.abspath(path.parent)) == Path(os.path.abspath(dst.parent)) and \
        path.name.startswith(f".{_stem(dst.name)}.")


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, innermost last."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


# --- who wrote a temporary file; the process's umask -------------------------------------------------------

# What follows `.NAME.` in the temporary names of a writer that knew its machine: write_file's, and write_dir's.
_FILE_WRITER = re.compile(r"(?P<pid>[0-9]+)-(?P<machine>[0-9a-f]{8})\.[a-z0-9_]+\.tmp")
_DIR_WRITER = re.compile(r"(?P<pid>[0-9]+)-(?P<machine>[0-9a-f]{8})\.(?P<kind>tmp|old)-[a-z0-9_]+")

_NAME_MAX = 255  # bytes in one name (ext4, xfs, btrfs, tmpfs, NFS)
# What a temporary name adds to `_stem(NAME)`: "." and "." around it, a pid (10 digits at most), "-", the machine (8),
# then ".XXXXXXXX.tmp" (write_file's) or ".tmp-XXXXXXXX" (write_dir's).
_STEM_MAX = _NAME_MAX - (1 + 1 + 10 + 1 + 8 + 13)


def _stem(name: str) -> str:
    """What stands for a target `name` in its temporary names: `name`, or where that would make them too long to be
    a name, its start, "~" and 16 hex digits of its hash, `_STEM_MAX` bytes in all (no other name's is the same)."""
    raw = os.fsencode(name)
    if len(raw) <= _STEM_MAX:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    start = name[:_STEM_MAX]
    while len(os.fsencode(start)) > _STEM_MAX - 1 - len(digest):  # cut between characters, never inside one
        start = start[:-1]
    return f"{start}~{digest}"


def _writer() -> str:
    """This writer's part of its temporary names: `<pid>-<machine>`, or only the pid where the machine is unknown."""
    machine = _machine()
    return f"{os.getpid()}-{machine}" if machine else str(os.getpid())


@functools.cache
def _machine() -> str | None:
    """8 hex digits naming the space this process's pid is counted in: this boot of this kernel (its random boot
    id) and this pid namespace; None where either cannot be read (not Linux), so that no pid is judged there.

    Two processes with the same value see each other's pids; a host name would not do: containers may share one
    and not their pids, and two hosts may share one and a folder."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except (OSError, ValueError):
        return None
    if not boot or not namespace:
        return None
    return hashlib.sha256(f"{boot}\0{namespace}".encode()).hexdigest()[:8]


def pid_running(pid: int) -> bool:
    """Whether a process `pid` exists here (one of another user's, which we may not signal, counts; one that ended
    and waits for its parent to collect it too)."""
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether it could be
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, and is another user's
        return True
    return True


def _dead_writers(path: Path, writer: re.Pattern) -> list[str]:
    """The names beside `path` of the temporaries (those `writer` matches) that writers of `path` made on this
    machine and left when killed: their pid is not running. Never fails the write that asks (an unreadable folder
    says so there)."""
    machine = _machine()
    if machine is None or os.name != "posix":  # elsewhere os.kill(pid, 0) is no question but a kill
        return []
    start = f".{_stem(path.name)}."
    try:
        with os.scandir(path.parent) as entries:
            names = [e.name for e in entries if e.name.startswith(start)]
    except OSError:
        return []
    dead = []
    for name in names:
        # the whole rest must be a writer's part: a target `a.5` has temporaries `.a.5.<writer>.XXXX.tmp`, which
        # are not `a`'s
        found = writer.fullmatch(name[len(start):])
        if found is None or found["machine"] != machine:
            continue
        pid = int(found["pid"])
        if pid > 0 and pid != os.getpid() and not pid_running(pid):
            dead.append(name)
    return dead


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it from /proc/self/status where Linux shows it (since 4.7): a
    file another thread makes meanwhile gets the real one. Elsewhere reading it means setting it and setting it
    back at once, under a lock so that two readers never take each other's stand-in for the umask; the stand-in is
    0o077, so a file another thread makes in that moment is private rather than open to all."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask
