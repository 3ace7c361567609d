"""Time that counts against a timeout: the monotonic clock less the time this process spent stopped.

A process stopped by SIGSTOP (Ctrl-Z in a terminal, a scheduler suspending a job, a debugger) and continued later
finds every deadline it set before the stop long past: a decoding worker that was half way through a good file when
the job was suspended for an hour would be taken for hung and its file charged. `elapsed_since(t0)` gives the
seconds since `t0` (a time.monotonic() reading, which is one clock for every process of the machine) less the
stops this process saw since, so the timeouts of the decoder pool, the data loaders and the decoding watchdog count
only time the program was running.

A stop is seen by a ticker thread that wakes every PERIOD_S: a gap between two ticks longer than PERIOD_S +
SLACK_S is taken for a stop (the excess). A machine so busy that the thread waits more than SLACK_S for the CPU
counts as stopped too: a timeout then waits longer, it never fires sooner; so does a process that saw more than
KEPT_STOPS stops (its oldest two are then kept as one, the time it ran between them counted as stopped). The thread
starts with `start()` (whoever sets a timeout calls it, so that it watches the whole wait) and again in a forked
child that calls it.
"""

from __future__ import annotations

import os
import threading
import time

PERIOD_S = 0.5  # how often the ticker wakes
SLACK_S = 2.0  # a gap between ticks longer than PERIOD_S by this much is a stop
KEPT_STOPS = 1000  # the stops kept apart (beyond, the oldest are joined: a timeout then waits longer, never less)

_stops: list[tuple[float, float]] = []  # (start, end) in time.monotonic() of each stop seen, oldest first
_lock = threading.Lock()
_ticking_in: int | None = None  # the pid whose ticker runs (a forked child has none: it starts its own)
_last_tick = 0.0  # when the ticker last woke


def start() -> None:
    """Start watching for stops in this process (once; again in a forked child)."""
    global _ticking_in, _last_tick
    with _lock:
        if _ticking_in == os.getpid():
            return
        _ticking_in, _last_tick = os.getpid(), time.monotonic()
        _stops.clear()  # a forked child's copy holds its parent's
    try:
        threading.Thread(target=_tick, daemon=True, name="xlsr-stop-clock").start()
    except RuntimeError:  # no thread (a process at its thread limit): not taken for one, whose silence is a stop
        with _lock:
            _ticking_in = None
        raise


def _forked() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's ticker may have held its copy at the fork, which nothing would release


os.register_at_fork(after_in_child=_forked)


def _tick() -> None:
    global _last_tick
    while True:
        time.sleep(PERIOD_S)
        now = time.monotonic()
        with _lock:
            if now - _last_tick > PERIOD_S + SLACK_S:
                if len(_stops) >= KEPT_STOPS:  # the oldest two as one: never a stop forgotten, the clock never ahead
                    _stops[:2] = [(_stops[0][0], _stops[1][1])]
                _stops.append((_last_tick + PERIOD_S, now))
            _last_tick = now


def elapsed_since(t0: float, now: float | None = None) -> float:
    """Seconds from `t0` to `now` (time.monotonic() readings; `now` defaults to the present) less the time this
    process was seen stopped in between."""
    now = time.monotonic() if now is None else now
    with _lock:
        stops = list(_stops)
        if _ticking_in == os.getpid() and now - _last_tick > PERIOD_S + SLACK_S:
            stops.append((_last_tick + PERIOD_S, now))  # continued a moment ago: the ticker has not woken yet
    stopped = sum(min(end, now) - max(begin, t0) for begin, end in stops if end > t0 and begin < now)
    return now - t0 - stopped
