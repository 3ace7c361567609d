"""How many CPU cores this process may use: the count every "one per core" default starts from.

`os.cpu_count()` is the machine's count. A cluster job (Slurm, a container's cpuset, `taskset`) is usually given a
share of a node, and a process that starts a worker or a thread per machine core there oversubscribes its share.
The affinity mask is the share. Torch-free, so that the data layer's worker pools may use it.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask where the OS has one (Linux), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1
