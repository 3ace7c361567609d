"""stop_clock (stop_clock.py) leaves out exactly the time a process was stopped: only the part of a stop that falls
between `t0` and `now`; a ticker merely late (within SLACK_S) is no stop; a forked child that calls start() watches
its own stops. The checks that drive the ticker by hand run in a process of their own, where no ticker runs."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from xlsr import stop_clock


@pytest.fixture
def far(monkeypatch) -> float:
    """A moment far ahead of the present, where no stop the ticker sees meanwhile can fall; no pending gap."""
    monkeypatch.setattr(stop_clock, "_ticking_in", None)
    return time.monotonic() + 1e6


@pytest.mark.parametrize("stop, elapsed", [
    ((-10.0, 1.0), 2.0),  # begun before t0: only its second after t0 is left out
    ((2.0, 10.0), 2.0),  # going on at `now`: only its second before `now`
    ((5.0, 8.0), 3.0),  # after `now`: nothing (the clock never runs ahead of the wall clock)
    ((-10.0, -1.0), 3.0),  # over before t0: nothing
    ((0.5, 1.5), 2.0),  # inside: all of it
])
def test_only_the_part_of_a_stop_between_t0_and_now_is_left_out(monkeypatch, far, stop, elapsed):
    monkeypatch.setattr(stop_clock, "_stops", [(far + stop[0], far + stop[1])])
    assert stop_clock.elapsed_since(far, far + 3.0) == pytest.approx(elapsed)


# the ticker driven by a fake clock (each of its sleeps lasting `gap` seconds), then the pending gap of a ticker that
# has not woken yet; no ticker thread runs in this process
BY_HAND = textwrap.dedent("""
    import json, os, sys, time
    from xlsr import stop_clock as sc

    class Done(Exception):
        pass

    class FakeTime:
        def __init__(self, now, gap, ticks):
            self.now, self.gap, self.left = now, gap, ticks
        def monotonic(self):
            return self.now
        def sleep(self, seconds):
            if self.left == 0:
                raise Done
            self.left -= 1
            self.now += self.gap

    out = {}
    fake = FakeTime(100.0, gap=sc.PERIOD_S + sc.SLACK_S / 2, ticks=10)  # each tick late, within the slack
    sc.time, sc._last_tick = fake, 100.0
    try:
        sc._tick()
    except Done:
        pass
    out["late_ticks"] = [fake.now - 100.0, sc.elapsed_since(100.0, fake.now), len(sc._stops)]
    sc.time, sc._ticking_in, sc._last_tick = time, os.getpid(), 1000.0  # the ticker last woke at 1000
    out["ticker_late"] = sc.elapsed_since(990.0, 1000.0 + sc.PERIOD_S + sc.SLACK_S / 2)
    out["continued"] = sc.elapsed_since(990.0, 1000.0 + sc.PERIOD_S + sc.SLACK_S + 5.0)
    print(json.dumps(out))
""")


def test_a_ticker_late_within_its_slack_is_no_stop_and_a_longer_silence_is_one():
    done = subprocess.run([sys.executable, "-c", BY_HAND], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    wall, elapsed, stops = out["late_ticks"]
    assert stops == 0 and elapsed == pytest.approx(wall) == 10 * (stop_clock.PERIOD_S + stop_clock.SLACK_S / 2)
    # asked while the ticker is late within its slack: all of it ran; past the slack: stopped since its period ended
    assert out["ticker_late"] == pytest.approx(10.0 + stop_clock.PERIOD_S + stop_clock.SLACK_S / 2)
    assert out["continued"] == pytest.approx(10.0 + stop_clock.PERIOD_S)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_that_calls_start_watches_its_own_stops(tmp_path):
    stop_clock.start()  # the parent's ticker runs; the child has none until it calls start()
    told = tmp_path / "elapsed"
    pid = os.fork()
    if pid == 0:
        try:
            stop_clock.start()
            with stop_clock._lock:  # the child's ticker last woke 10 s ago: the child was stopped since
                now = time.monotonic()
                stop_clock._last_tick = now - 10.0
            told.write_text(repr(stop_clock.elapsed_since(now - 20.0, now)))
        finally:
            os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    # 20 s less the stop from the end of the ticker's period on (9.5 s), whether the ticker woke since or not
    assert float(told.read_text()) == pytest.approx(20.0 - (10.0 - stop_clock.PERIOD_S), abs=1.0)
