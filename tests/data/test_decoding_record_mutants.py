"""The decoding watchdog (data/decoding_record.py) in the cases its first tests leave open: what counts as computing
(CPU_SHARE of the timeout, from the decoding's start, read where the clock can be read), a decoding let go at a
debugger's prompt staying let go, one watchdog per record that ends with it, and the process still ended, in
exit status 3 (docs/CONTRACTS.md) with what it printed, where the record or crashed.jsonl cannot be written. The
cases where the watchdog ends the process run in a process of their own."""

import gc
import io
import os
import pdb
import subprocess
import sys
import textwrap
import threading
import time
import types
import weakref

import pytest

from xlsr.data import decoding_record
from xlsr.data.decoding_record import CRASHED, FOLDER, DecodingRecord, _computing, _in_debugger


def with_time(**fakes) -> types.SimpleNamespace:
    """decoding_record's `time`, with `fakes` in place of some of its functions (the others the real ones, for any
    other record's watchdog thread of this process)."""
    real = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    return types.SimpleNamespace(**{**real, **fakes})


def busy(seconds: float) -> None:
    """Compute for `seconds` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.parametrize("spent, hung", [(0.49, False), (0.5, True), (0.51, True), (1.9, True)])
def test_a_decoding_is_computing_once_its_thread_spent_a_quarter_of_the_timeout(monkeypatch, spent, hung):
    monkeypatch.setattr(decoding_record, "time", with_time(pthread_getcpuclockid=lambda ident: 7,
                                                           clock_gettime=lambda clock: 10.0 + spent))
    now = ("a.wav", 0.0, threading.get_ident(), 10.0)  # begun when its thread had spent 10 s of CPU time
    assert _computing(now, 2.0) is hung


def test_where_a_threads_cpu_time_cannot_be_read_a_decoding_counts_as_computing(monkeypatch):
    fake = with_time()
    del fake.pthread_getcpuclockid  # as on a system without it: the timeout alone decides
    monkeypatch.setattr(decoding_record, "time", fake)
    assert _computing(("a.wav", 0.0, threading.get_ident(), 0.0), 2.0) is True


@pytest.mark.skipif(not hasattr(time, "pthread_getcpuclockid"), reason="a thread's CPU clock (Linux)")
def test_cpu_time_is_counted_from_the_decodings_start(tmp_path):
    record = DecodingRecord(tmp_path / "run")  # no timeout, no watchdog: the decoding under way is kept all the same
    busy(0.3)  # the thread computed before (training, other decodings): not this decoding's
    with record.decoding("a.wav"):
        assert not _computing(record._now, 1.0)
        busy(0.3)
        assert _computing(record._now, 1.0)
    record.close()


def test_a_thread_at_pdbs_post_mortem_prompt_is_in_a_debugger():
    at_prompt, go_on = threading.Event(), threading.Event()

    class Prompt(pdb.Pdb):
        def preloop(self):
            at_prompt.set()
            go_on.wait(30)

    def post_mortem():  # what pdb.post_mortem() does inside a decoding (no bdb frame on the stack)
        try:
            raise ValueError("looked at")
        except ValueError as exc:
            prompt = Prompt(stdin=io.StringIO("c\n"), stdout=io.StringIO(),
                            readrc=False, nosigint=True)
            prompt.reset()
            prompt.interaction(None, exc.__traceback__)

    thread = threading.Thread(target=post_mortem, daemon=True)
    thread.start()
    try:
        assert at_prompt.wait(30)
        assert _in_debugger(thread.ident)
    finally:
        go_on.set()
        thread.join(30)
    assert not _in_debugger(threading.get_ident())


def test_a_short_timeout_is_looked_at_four_times_within_it(tmp_path, monkeypatch):
    record = DecodingRecord(tmp_path / "run")  # no watchdog of its own: this thread runs one look of one
    me, slept = threading.get_ident(), []

    class Looked(Exception):
        pass

    def sleep(seconds):
        if threading.get_ident() != me:  # another record's watchdog
            return time.sleep(seconds)
        slept.append(seconds)
        raise Looked

    monkeypatch.setattr(decoding_record, "time", with_time(sleep=sleep))
    for timeout in (0.4, 60.0):
        record.timeout = timeout
        with pytest.raises(Looked):
            decoding_record._watch(weakref.ref(record))
    assert slept == [0.1, decoding_record.WATCH_PERIOD_S]


def watchdogs() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "xlsr-decode-watchdog"}


def test_a_record_has_one_watchdog_and_it_ends_when_the_record_is_dropped(tmp_path):
    before = watchdogs()
    record = DecodingRecord(tmp_path / "run", timeout=0.4)
    for audio in ("a.wav", "b.wav", "c.wav"):
        with record.decoding(audio):
            pass
    (watchdog,) = watchdogs() - before
    record.close()
    del record
    gc.collect()
    watchdog.join(30)  # it looks every 0.1 s: it ends at its next look
    assert not watchdog.is_alive()


# the main thread stops at pdb's prompt inside a decoding and is let go; after "c" the decoding goes on, its time
# (the prompt's with it) past the timeout, while the watchdog looks twice more
LET_GO = textwrap.dedent("""
    import pdb, sys, threading, time, types
    from xlsr import stop_clock
    from xlsr.data import decoding_record
    prompted, slept = threading.Event(), threading.Semaphore(0)
    stop_clock.elapsed_since = lambda t0, now=None: 1e9 if prompted.is_set() else 0.0
    decoding_record._computing = lambda now, timeout: True  # as if it computed: only the excuse keeps it going

    def sleep(seconds):  # the watchdog's sleep between two looks
        slept.release()
        time.sleep(seconds)

    decoding_record.time = types.SimpleNamespace(monotonic=time.monotonic, thread_time=time.thread_time, sleep=sleep)

    def looks(n):  # wait for n whole looks of the watchdog
        while slept.acquire(blocking=False):
            pass
        for _ in range(n + 1):
            assert slept.acquire(timeout=30)

    class Prompt(pdb.Pdb):
        def preloop(self):
            prompted.set()
            looks(2)

    record = decoding_record.DecodingRecord(sys.argv[1], timeout=0.2)
    with record.decoding("looked-at.wav"):
        Prompt(readrc=False, nosigint=True).set_trace()
        looks(2)
    print("decoded", flush=True)
""")


def test_a_decoding_let_go_at_a_debuggers_prompt_is_not_ended_when_it_goes_on(tmp_path):
    done = subprocess.run([sys.executable, "-c", LET_GO, str(tmp_path / "run")], input="c\n", capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("decoded")
    assert not (tmp_path / "run" / FOLDER / CRASHED).exists()


# a decoder round a loop (for 20 s at most: a watchdog that does not end the process shows as "decoded"); stdout is
# a pipe, so what is printed without a flush is still in the process's buffer when the watchdog ends it
HANGS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from xlsr.data.decoding_record import DecodingRecord
    run, case = sys.argv[1], sys.argv[2]
    if case == "unrecorded":  # the record cannot be kept (a full disk)
        def refused(self):
            raise OSError(28, "No space left on device")
        DecodingRecord._open = refused
    record = DecodingRecord(run, timeout=0.4)
    if case == "unwritable":  # crashed.jsonl cannot be written
        (Path(run) / "decoding" / "crashed.jsonl").mkdir(parents=True)
    print("before the decoding")
    with record.decoding("b.wav"):
        end = time.monotonic() + 20
        while time.monotonic() < end:
            pass
    print("decoded", flush=True)
""")


@pytest.mark.parametrize("case", ["recorded", "unrecorded", "unwritable"])
def test_a_hung_decoding_ends_the_process_in_status_3_with_its_output(tmp_path, case):
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as a pipe's is
    done = subprocess.run([sys.executable, "-c", HANGS, str(run), case], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 3, done.stderr  # docs/CONTRACTS.md: os._exit(HUNG_EXIT), 3
    assert done.stdout == "before the decoding\n"
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("b.wav: the audio decoder has been on it for more than 0.4 s in the training process")
    crashed = run / FOLDER / CRASHED
    if case == "unwritable":
        assert line.endswith(f"the run stops here and {crashed} could not be written (Is a directory): the same "
                             f"command skips it only where this process's record of it was kept")
        assert DecodingRecord(run).died_on == "b.wav"  # the record kept: the next run blames it all the same
    else:
        assert line.endswith(f"the run stops here and the same command skips it ({crashed} lists it)")
        assert "b.wav" in DecodingRecord(run).crashed
