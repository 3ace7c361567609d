"""stop_clock (stop_clock.py) errs only towards waiting longer: a process with more stops than it keeps apart, a
ticker thread that could not start, a child forked while the ticker held the lock."""

import os
import subprocess
import sys
import threading
import time

import pytest

from xlsr import stop_clock

# Run in a process of its own: the fake clock replaces the module's `time`, which the ticker thread that earlier tests
# started in this process also reads; woken during the fake ticks it would die on Done and take every later timeout
# here for a stop.
_MANY_STOPS = """
import copy
import pytest
from xlsr import stop_clock


class FakeTime:
    # time for the ticker: each sleep lasts `gap` seconds; after `ticks` of them the ticker is ended
    class Done(Exception):
        pass

    def __init__(self, start, gap, ticks):
        self.now, self.gap, self.left = start, gap, ticks

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        if self.left == 0:
            raise self.Done
        self.left -= 1
        self.now += self.gap


# a wait of 3 s per tick of which 2.5 s are a stop (a starved or repeatedly suspended process): 1200 ticks
fake = FakeTime(1000.0, gap=stop_clock.PERIOD_S + 2.5, ticks=1200)
stop_clock.time = fake
stop_clock._last_tick = 1000.0
stop_clock._ticking_in = None  # no pending gap: the ticks are all there is
try:
    stop_clock._tick()
except FakeTime.Done:
    pass
# each tick ran PERIOD_S and was stopped 2.5 s: from the first tick on, 1200 x PERIOD_S of running
assert stop_clock.elapsed_since(1000.0, fake.now) <= 1200 * stop_clock.PERIOD_S + 1e-6
# the newest stops stay exact: over the last 100 ticks, 100 x PERIOD_S of running
since = fake.now - 100 * (stop_clock.PERIOD_S + 2.5)
assert stop_clock.elapsed_since(since, fake.now) == pytest.approx(100 * stop_clock.PERIOD_S)
print("ok")
"""


def test_more_stops_than_kept_apart_never_make_the_clock_run_ahead():
    done = subprocess.run([sys.executable, "-c", _MANY_STOPS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def test_a_ticker_that_could_not_start_is_started_by_the_next_caller(monkeypatch):
    monkeypatch.setattr(stop_clock, "_ticking_in", None)

    def refused(self):
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as m:
        m.setattr(threading.Thread, "start", refused)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            stop_clock.start()
    # not taken for a running ticker whose silence is a stop: 100 s of running are 100 s, not the ticker's period
    now = time.monotonic()
    assert stop_clock.elapsed_since(now - 100.0, now + 100.0) == pytest.approx(200.0)
    started = []
    with monkeypatch.context() as m:
        m.setattr(threading.Thread, "start", lambda self: started.append(self.name))
        stop_clock.start()
    assert started == ["xlsr-stop-clock"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_while_the_ticker_held_the_lock_can_take_it():
    stop_clock._lock.acquire()  # as the ticker holds it for a moment twice a second
    try:
        pid = os.fork()
        if pid == 0:  # the child: start() and elapsed_since() take the lock
            os._exit(0 if stop_clock._lock.acquire(blocking=False) else 1)
    finally:
        stop_clock._lock.release()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
