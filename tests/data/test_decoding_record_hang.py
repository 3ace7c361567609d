"""A decoder that hangs in the training process (no data worker to stop): the decoding record's watchdog ends the
process after `timeout` seconds on one file, naming it, with the file in RUN/decoding/crashed.jsonl, so that the same
command skips it (data/decoding_record.py). Each case runs in a process of its own: the watchdog ends its process."""

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time

from xlsr.data.decoding_record import CRASHED, FOLDER, HUNG_EXIT, NOW, DecodingRecord

SCRIPT = textwrap.dedent("""
    import sys, time
    from xlsr.data.decoding_record import DecodingRecord
    run, timeout, plan = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    record = DecodingRecord(run, timeout=timeout)
    for step in plan:  # "AUDIO=SECONDS": a decoding that waits that long (a read stalled on its storage);
        spin = step.startswith("spin:")  # "spin:AUDIO=SECONDS": one that computes (a decoder sent round a loop)
        audio, seconds = step.removeprefix("spin:").split("=")
        if audio == "idle":  # "idle=SECONDS": no decoding
            time.sleep(float(seconds))
            continue
        with record.decoding(audio):
            print("decoding", audio, flush=True)
            for _ in range(round(float(seconds) / 0.05)):  # in steps: time stopped is not made up at the end
                end = time.monotonic() + 0.05
                while spin and time.monotonic() < end:
                    pass
                if not spin:
                    time.sleep(0.05)
        print("decoded", audio, flush=True)
""")


def run_plan(tmp_path, timeout: float, *plan: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run"), str(timeout), *plan],
                          capture_output=True, text=True, timeout=60)


def test_a_decoding_past_the_timeout_ends_the_process_naming_the_file(tmp_path):
    done = run_plan(tmp_path, 0.5, "a.wav=0.1", "spin:b.wav=30", "c.wav=0.1")
    assert done.returncode == HUNG_EXIT
    assert done.stdout.split("\n")[:-1] == ["decoding a.wav", "decoded a.wav", "decoding b.wav"]
    (line,) = done.stderr.strip().splitlines()
    crashed = tmp_path / "run" / FOLDER / CRASHED
    assert line == (f"b.wav: the audio decoder has been on it for more than 0.5 s in the training process (hung, "
                    f"most likely; with data workers it would have been stopped and the file skipped); the run stops "
                    f"here and the same command skips it ({crashed} lists it)")
    assert [json.loads(x) for x in crashed.read_text().splitlines()] == [{"audio": "b.wav", "rank": 0, "hung": 0.5}]
    # the next run skips it, in words that say it hung; the record itself was cleared: no second blame
    again = DecodingRecord(tmp_path / "run")
    assert again.died_on is None
    assert again.crashed == {"b.wav": f"b.wav: an earlier run in the run folder {tmp_path / 'run'} ended while "
                                      f"decoding it in the training process (its decoder hung: more than 0.5 s on "
                                      f"it); skipped in this run and later ones ({crashed} lists it)"}
    assert (tmp_path / "run" / FOLDER / f"{NOW}0").read_bytes()[:8] == bytes(8)


def test_decodings_within_the_timeout_and_idle_time_end_nothing(tmp_path):
    done = run_plan(tmp_path, 1.5, "a.wav=0.6", "idle=2", "b.wav=0.6", "c.wav=0.6", "idle=2")  # each within, together past it
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("decoded")] == [
        "decoded a.wav", "decoded b.wav", "decoded c.wav"]
    assert not (tmp_path / "run" / FOLDER / CRASHED).exists()


def test_without_a_timeout_no_watchdog_is_started(tmp_path):
    record = DecodingRecord(tmp_path / "run")
    with record.decoding("a.wav"):
        pass
    assert not [t for t in threading.enumerate() if t.name == "xlsr-decode-watchdog"]


def test_time_the_process_spends_stopped_is_not_taken_for_a_hang(tmp_path):
    # 1 s of decoding, timeout 2.5 s, the process stopped for 3 s in the middle (Ctrl-Z, a scheduler's suspend)
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "run"), "2.5", "spin:b.wav=1.0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "decoding b.wav\n"
        time.sleep(0.3)
        process.send_signal(signal.SIGSTOP)
        time.sleep(3)
        process.send_signal(signal.SIGCONT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out == "decoded b.wav\n"
    assert not (tmp_path / "run" / FOLDER / CRASHED).exists()


def test_a_decoding_that_waits_on_its_storage_past_the_timeout_is_waited_for(tmp_path):
    done = run_plan(tmp_path, 0.5, "b.wav=2.5")  # five times the timeout, computing nothing: an NFS stall, not a hang
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["decoding b.wav", "decoded b.wav"]
    assert not (tmp_path / "run" / FOLDER / CRASHED).exists()
