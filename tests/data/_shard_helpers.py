"""Encoders for the `xlsr data shard --workers` tests: `shards.flac_or_reason`, except on chosen files. They are
module-level functions so that a spawned decoding worker finds them by name (a monkeypatch does not reach it). A
file is chosen by a word in its name; SHARD_WORKER_LOG (inherited by the workers), when set, names a file that
each worker appends its process id to as it encodes a file."""

import os
import resource
import signal
from pathlib import Path

from xlsr.data import shards


def _log_pid() -> None:
    log = os.environ.get("SHARD_WORKER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")


def crashing(path: str):
    """Dies of SIGSEGV on *segv* files, as a decoder reading a damaged file may; raises MemoryError on *oom* files."""
    _log_pid()
    name = Path(path).name
    if "segv" in name:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
        os.kill(os.getpid(), signal.SIGSEGV)
    if "oom" in name:
        raise MemoryError("cannot allocate 9 EiB")
    return shards.flac_or_reason(path)


def ctrl_c_on_stop(path: str):
    """Ctrl-C to this process's whole group (as a terminal sends it) on a *stop* file, which is then encoded."""
    if "stop" in Path(path).name:
        os.killpg(0, signal.SIGINT)  # the worker ignores it; the process that started it stops
    return shards.flac_or_reason(path)
