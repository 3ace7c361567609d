"""Hand the memory a finished run freed back to the operating system.

A training run frees its model, optimizer state and activations when it returns, but glibc's allocator keeps the
freed heap pages: measured on this machine, a 30-update `tiny-demo` pretraining run left the process at ~2.8 GB
resident with no tensor alive, and a second run in the same process grew it to ~3.2 GB. `malloc_trim(0)` gave
2.1 GB back (to ~0.65 GB). Notebooks, sweeps and the demo run many trainings in one process, so `pretrain()` and
`finetune()` call `release_memory()` on their way out (benchmarks/repeat_runs.py measures it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set size from /proc (Linux), None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _malloc_trim() -> bool:
    """glibc's malloc_trim(0): give free heap pages back; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def release_memory() -> int:
    """Collect garbage, empty the CUDA cache and trim the C heap; returns the resident bytes given back (0 if unknown)."""
    before = resident_bytes()
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    _malloc_trim()
    after = resident_bytes()
    return max(0, before - after) if before is not None and after is not None else 0
