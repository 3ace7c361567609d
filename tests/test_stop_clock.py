"""Timeouts count only time the program was running (stop_clock.py): a process stopped by SIGSTOP (Ctrl-Z, a
scheduler suspending the job) and continued does not take the stop for a hang, in the decoder pool, the data
loaders' reading slots, or (tests/data/test_decoding_record_hang.py) the decoding watchdog."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from xlsr import stop_clock
from xlsr.data.worker_crash import ReadingSlots

HERE = Path(__file__).parent


def test_elapsed_time_is_the_clocks_while_the_process_runs():
    stop_clock.start()
    t0 = time.monotonic()
    time.sleep(0.3)
    now = time.monotonic()
    assert stop_clock.elapsed_since(t0, now) == now - t0


def test_a_stop_is_left_out_of_the_elapsed_time(tmp_path):
    script = textwrap.dedent("""
        import time
        from xlsr import stop_clock
        stop_clock.start()
        t0 = time.monotonic()
        print("ready", flush=True)
        for _ in range(20):
            time.sleep(0.05)
        print(time.monotonic() - t0, stop_clock.elapsed_since(t0), flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        time.sleep(0.2)
        process.send_signal(signal.SIGSTOP)
        time.sleep(3)
        process.send_signal(signal.SIGCONT)
        wall, elapsed = map(float, process.communicate(timeout=30)[0].split())
    finally:
        if process.poll() is None:
            process.kill()
    assert wall > 3.5 and elapsed < 1.9  # 1 s of steps, the ticker's period and slack at most added


def test_a_reading_slot_past_its_time_only_by_a_stop_is_not_overdue(monkeypatch):
    slots = ReadingSlots(1)
    now = time.monotonic()
    slots.slots[0], slots.since[0] = 7, now - 5.0  # worker 0 on utterance 7 for 5 s of wall time
    assert [(w, i) for w, i, _ in slots.overdue(3.0)] == [(0, 7)]
    monkeypatch.setattr(stop_clock, "_stops", [(now - 4.5, now - 1.0)])  # 3.5 s of it the process was stopped
    assert slots.overdue(3.0) == []


POOL = textwrap.dedent("""
    from xlsr.data.decoder_pool import DecoderPool
    import _hanging_decoders
    with DecoderPool(1, _hanging_decoders.marked_slow_steps, failed=str, timeout=2.0) as pool:
        for key, result in sorted(pool.map([(0, "a.wav"), (1, "b.wav")])):
            print(key, result, flush=True)
""")


def test_a_decoder_pool_stopped_with_its_workers_and_continued_charges_no_file(tmp_path):
    started = tmp_path / "started"
    env = {**os.environ, "STARTED": str(started), "PYTHONPATH": os.pathsep.join([str(HERE / "data"), *sys.path])}
    process = subprocess.Popen([sys.executable, "-c", POOL], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # its own group: the whole job stopped at once
    try:
        deadline = time.monotonic() + 60
        while not (started.exists() and started.read_text()):
            assert time.monotonic() < deadline and process.poll() is None, "the worker never began a file"
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGSTOP)  # as Ctrl-Z stops a terminal's job, or a scheduler suspends it
        time.sleep(3.5)
        os.killpg(process.pid, signal.SIGCONT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err
    assert out.splitlines() == ["0 a.wav", "1 b.wav"]  # not "a.wav: decoder hung (no answer in 2 s; ...)"
