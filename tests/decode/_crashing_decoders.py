"""Decoders for the decoder-crash tests of transcription. They are module-level functions so that a spawned
decoding worker finds them by name (a monkeypatch does not reach it). A file is chosen by a word in its name;
DECODED_LOG (inherited by the workers), when set, names a file each path is appended to as its decoding starts."""

import os
import resource
import signal
import sys
from pathlib import Path

from xlsr.data.decoder_pool import length_or_reason, waveform_or_reason


def _log(path) -> None:
    log = os.environ.get("DECODED_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{path}\n")


def segv_on_marked(path, normalize: bool = False):
    """waveform_or_reason, except that a file with "segv" in its name kills this process with SIGSEGV, as a
    decoder reading a damaged file may."""
    _log(path)
    if "segv" in Path(path).name:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
        os.kill(os.getpid(), signal.SIGSEGV)
    return waveform_or_reason(path, normalize=normalize)


def name_or_segv(path):
    """The file's name, without reading it (SIGSEGV for a "segv" one)."""
    _log(path)
    if "segv" in str(path):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), signal.SIGSEGV)
    return str(path)


def raising(path):
    """A decoder that raises something other than an AudioError on a "oom" file."""
    if "oom" in str(path):
        raise MemoryError("cannot allocate 9 EiB\nsecond line")
    return str(path)


def torch_loaded(path) -> bool:
    """Whether this process has imported torch."""
    return "torch" in sys.modules



def length_or_segv(path):
    """length_or_reason, except that reading the header of a file with "segv" in its name kills this process."""
    _log(path)
    if "segv" in Path(path).name:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), signal.SIGSEGV)
    return length_or_reason(path)
