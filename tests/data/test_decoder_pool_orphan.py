"""A DecoderPool worker outlives no parent: when the process that started it ends without stopping it (SIGTERM to
that process alone, as `kill PID` sends it; SIGKILL), the worker, which ignores SIGTERM and may be busy on a file or
hung on it, notices and ends within about a second (decoder_pool.PARENT_CHECK_S)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PARENT = textwrap.dedent("""
    import sys, time
    from xlsr.data.decoder_pool import DecoderPool
    import _hanging_decoders
    with DecoderPool(1, _hanging_decoders.pid_then_hang, failed=str) as pool:
        for _ in pool.map([(0, "a.wav")]):
            pass
""")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet waited for by its new parent) counts as ended
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" not in status.read_text()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_worker_hung_on_a_file_ends_when_its_parent_is_gone(tmp_path, how):
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "WORKER_PID": str(pid_file),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and parent.poll() is None, "the worker never started its file"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        parent.send_signal(how)  # the parent alone: it ends at once (no handler), without closing its pool
        assert parent.wait(timeout=30) == -how
        deadline = time.monotonic() + 10
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker), "the worker was left running after its parent ended"
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and pid_file.read_text() and _running(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


class _ResetConnection:
    """A worker's end of the pipe whose parent was killed mid-message: the read fails as a connection reset."""

    def __init__(self):
        self.sent = []

    def send(self, obj):
        self.sent.append(obj)

    def recv(self):
        raise ConnectionResetError(104, "Connection reset by peer")


def test_a_worker_whose_parent_is_killed_mid_message_ends_without_a_traceback(monkeypatch):
    """(SIGTERM or SIGKILL to `xlsr transcribe` alone printed `Process SpawnProcess-2: Traceback ...
    ConnectionResetError` from a worker: only the pipe's clean end was taken for the parent's)"""
    from xlsr.data import decoder_pool

    monkeypatch.setattr(decoder_pool, "ignore_stop_signals", lambda *a: None)  # (this process's own signals stay)
    monkeypatch.setattr(decoder_pool.threading, "Thread", lambda *a, **kw: type("T", (), {"start": lambda self: None})())
    conn = _ResetConnection()
    assert decoder_pool._serve(conn, work=len) is None
    assert conn.sent == [None]  # it said it was ready, then ended quietly
