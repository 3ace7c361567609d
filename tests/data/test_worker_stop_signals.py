"""A data worker outlives the SIGINT and SIGTERM a scheduler sends the whole job: the trainer stops it."""

import os
import signal

import pytest

from xlsr.data.worker_signals import ignore_stop_signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_worker_outlives_the_stop_signals_sent_to_its_job(sig):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ignore_stop_signals(0)  # what each DataLoader worker runs first
        os.kill(os.getpid(), sig)  # delivered at once to this (main) thread: it would end the test run
        assert signal.getsignal(sig) is signal.SIG_IGN
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
