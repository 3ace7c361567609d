"""A rank that ends because a peer on its node failed ends only once the failing rank's process is gone: torchrun
names as the job's root cause the first process it finds ended, and a peer that left first (within half a second of
the announcement, while the failing rank still printed and unwound) was named instead of the rank that failed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import torch.distributed as dist

from xlsr.errors import XlsrError
from xlsr.train import elastic
from xlsr.train.distributed import DistInfo


def test_a_peer_ends_after_the_failing_ranks_process(tmp_path, monkeypatch):
    shared = dist.HashStore()
    monkeypatch.setattr(elastic, "_group_store", lambda: shared)
    monkeypatch.setattr(elastic, "broadcast_object", lambda obj, info: obj)
    monkeypatch.setattr(elastic, "POLL_SECONDS", 0.02)
    # the failing rank's process: it ends when told (its stdin closed); this test, its parent, collects it
    failing_process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    threading.Thread(target=failing_process.wait, daemon=True).start()
    ended = []

    def exit_(code):  # instead of ending the test: what the failing rank's process was when this rank ended
        ended.append((code, failing_process.returncode))
        peer._stop.set()

    monkeypatch.setattr(elastic.os, "_exit", exit_)
    failing = elastic.FailureWatch(DistInfo(rank=1, world_size=2), tmp_path)
    peer = elastic.FailureWatch(DistInfo(rank=0, world_size=2), tmp_path)
    peer._key = failing._key  # the same group: rank 0's token, broadcast
    monkeypatch.setattr(elastic.os, "getpid", lambda: failing_process.pid)  # announced as the failing process's
    try:
        failing.announce(XlsrError("data/en/train.jsonl: 12 of 40 files unreadable"))
        time.sleep(0.3)  # many polls: the peer has read the failure
        assert ended == []  # and waits, while the failing rank's process runs
        failing_process.stdin.close()
        peer._thread.join(timeout=5.0)
    finally:
        failing_process.kill()
        failing.close()
        peer.close()
    assert ended == [(elastic.PEER_FAILED_EXIT, 0)]  # ended after it, once
