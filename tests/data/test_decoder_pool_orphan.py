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
