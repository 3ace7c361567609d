"""The decoding watchdog (data/decoding_record.py) blames no good file and ends no healthy run: a decoding whose
watchdog thread cannot start leaves no name behind; a decoding that ends while the watchdog is deciding is not
taken for hung; a decoding paused at a debugger's prompt is not taken for hung. The cases where the watchdog would
end the process run in a process of their own."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from xlsr import stop_clock
from xlsr.data.decoding_record import CRASHED, FOLDER, HUNG_EXIT, DecodingRecord


def test_a_watchdog_that_cannot_start_fails_the_decoding_and_blames_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(stop_clock, "_ticking_in", os.getpid())  # the ticker taken as running: only the watchdog
    record = DecodingRecord(tmp_path / "run", timeout=300.0)

    def refused(self):
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as m:
        m.setattr(threading.Thread, "start", refused)
        with pytest.raises(RuntimeError, match="can't start new thread"), record.decoding("good.wav"):
            pass
    assert record._now is None
    assert DecodingRecord(tmp_path / "run").died_on is None  # not blamed by the next run as a crash
    with record.decoding("good.wav"):  # the next decoding starts it
        assert record._watchdog is not None and record._watchdog.is_alive()


# the watchdog finds the decoding too long; before it acts, the main thread finishes that decoding and goes on
ENDED_MEANWHILE = textwrap.dedent("""
    import sys, threading
    from xlsr.data.decoding_record import DecodingRecord
    record = DecodingRecord(sys.argv[1], timeout=0.2)
    finish, finished, decided = threading.Event(), threading.Event(), threading.Event()

    def stop_hung(*args):  # the watchdog, between its look and its act
        finish.set()
        finished.wait(30)
        try:
            type(record)._stop_hung(record, *args)
        finally:
            decided.set()

    record._stop_hung = stop_hung
    with record.decoding("slow.wav"):
        while not finish.is_set():  # computing (a decoder round a loop), so that the watchdog takes it for hung
            pass
    finished.set()  # the main thread is past the decoding (it could be saving a checkpoint now)
    decided.wait(30)
    print("went on", flush=True)
""")


def test_a_decoding_that_ends_while_the_watchdog_decides_is_not_taken_for_hung(tmp_path):
    done = subprocess.run([sys.executable, "-c", ENDED_MEANWHILE, str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "went on\n"
    assert not (tmp_path / "run" / FOLDER / CRASHED).exists()


# the main thread stops at pdb's prompt inside a decoding; the watchdog finds the decoding too long while it waits
AT_A_PROMPT = textwrap.dedent("""
    import pdb, sys, threading, time, types
    from xlsr import stop_clock
    from xlsr.data import decoding_record
    at_prompt, slept = threading.Event(), threading.Semaphore(0)
    stop_clock.elapsed_since = lambda t0, now=None: 1e9 if at_prompt.is_set() else 0.0
    decoding_record._computing = lambda now, timeout: True  # as if it computed: the debugger's frames alone excuse it

    def sleep(seconds):  # the watchdog's sleep between two looks
        slept.release()
        time.sleep(seconds)

    decoding_record.time = types.SimpleNamespace(monotonic=time.monotonic, thread_time=time.thread_time, sleep=sleep)

    class Prompt(pdb.Pdb):
        def preloop(self):  # at the prompt: wait for two whole looks of the watchdog before reading "c"
            at_prompt.set()
            while slept.acquire(blocking=False):
                pass
            for _ in range(3):
                assert slept.acquire(timeout=30)

    record = decoding_record.DecodingRecord(sys.argv[1], timeout=0.2)
    with record.decoding("looked-at.wav"):
        Prompt(readrc=False, nosigint=True).set_trace()
        at_prompt.clear()
    print("decoded", flush=True)
""")


def test_a_decoding_paused_at_a_debuggers_prompt_is_not_taken_for_hung(tmp_path):
    done = subprocess.run([sys.executable, "-c", AT_A_PROMPT, str(tmp_path / "run")], input="c\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("decoded")  # after pdb's own lines
    assert not (tmp_path / "run" / FOLDER / CRASHED).exists()


# the watchdog ends the process: the main thread, finishing the decoding while the watchdog says so, goes no further
NOTHING_AFTER = textwrap.dedent("""
    import logging, sys, threading
    from xlsr.data.decoding_record import DecodingRecord
    finish, past = threading.Event(), threading.Event()

    class Slow(logging.Handler):  # the watchdog's line, slow to write (a loaded terminal or file system)
        def emit(self, record):
            finish.set()
            past.wait(1)

    logging.getLogger("xlsr.data.decoding_record").addHandler(Slow())
    record = DecodingRecord(sys.argv[1], timeout=0.2)
    with record.decoding("hung.wav"):
        while not finish.is_set():  # computing (a decoder round a loop), so that the watchdog takes it for hung
            pass
    print("past the decoding", flush=True)  # (a checkpoint's save could begin here)
    past.set()
""")


def test_the_watchdog_ends_the_process_before_the_main_thread_leaves_the_decoding(tmp_path):
    done = subprocess.run([sys.executable, "-c", NOTHING_AFTER, str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == HUNG_EXIT, done.stderr
    assert done.stdout == ""
