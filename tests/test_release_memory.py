"""release_memory: the heap pages a finished run freed go back to the operating system (glibc's malloc_trim)."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from xlsr.train.release_memory import release_memory, resident_bytes

# Run in a fresh interpreter: the test process's own heap (other tests' leftovers) would blur the figures.
SCRIPT = r"""
import torch
from xlsr.train.release_memory import release_memory, resident_bytes
torch.set_num_threads(1)
base = resident_bytes()
chunks = [torch.ones(2048) for _ in range(60_000)]  # 8 KB each, ~490 MB, below glibc's mmap threshold
del chunks[::2]                                        # free half, interleaved: the heap cannot shrink by itself
kept = chunks[-1:]
del chunks
freed = resident_bytes()
released = release_memory()
print(base, freed, released, resident_bytes())
"""


@pytest.mark.skipif(resident_bytes() is None or ctypes.util.find_library("c") is None, reason="Linux with glibc only")
def test_freed_heap_goes_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    base, freed, released, after = map(int, out)
    assert freed - base > 300 * 2**20  # the freed chunks were still resident ...
    assert released > 300 * 2**20      # ... until release_memory gave them back
    assert after - base < 100 * 2**20


def test_release_memory_returns_a_byte_count():
    assert release_memory() >= 0
