"""The one timing rule every side-by-side benchmark here uses: calls interleaved, the median kept.

Timing each contender in turn within every round (xlsr, reference, xlsr, reference, ...) exposes both to the same
load on a shared machine, which timing one after the other would not; the median drops the round that a
neighbour's burst hit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(calls: dict[str, Callable[[], object]], repeat: int, *, warmup: int = 1,
                        clock: Callable[[], float] = time.perf_counter,
                        sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median seconds per call of each of `calls` (name -> callable): `warmup` untimed rounds, then `repeat`
    rounds in which every call is timed once, in turn. `clock` is wall time unless given (`time.process_time`
    for CPU time); `sync` waits for an accelerator's queued work before each reading."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            sync()
            start = clock()
            fn()
            sync()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}
