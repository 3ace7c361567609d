"""DecoderPool's timeout: a decoder that hangs on a file costs that file (and its worker, stopped and replaced), not
the job; a slow file within the limit is not charged; time is counted from when a worker starts a file, not from
when it was sent; a worker that cannot start stops the pool in one line."""

import os
import signal
import time

import _hanging_decoders as decoders
import pytest

import xlsr.data.decoder_pool as pool_module
from xlsr.data.decoder_pool import DecoderPool
from xlsr.errors import XlsrError

HUNG = "decoder hung (no answer in 1 s; its worker was stopped)"


@pytest.mark.parametrize("mapping", ["in_order", "as_finished"])
def test_a_hanging_file_is_charged_and_the_rest_decoded(mapping):
    paths = ["a", "b_hang", "c", "d", "e_hang", "f"]
    start = time.monotonic()
    with DecoderPool(2, decoders.name_or_hang, failed=str, timeout=1.0) as pool:
        if mapping == "in_order":
            got = list(pool.map_in_order(paths, [1] * len(paths), ahead=3))
        else:
            got = [result for _, result in sorted(pool.map(enumerate(paths)))]
    assert got == ["a", f"b_hang: {HUNG}", "c", "d", f"e_hang: {HUNG}", "f"]
    assert time.monotonic() - start < 20  # two 1-s timeouts and three worker starts, not a wait for ever


def test_time_counts_from_the_start_of_a_file_not_from_its_sending():
    # one worker, sent DEPTH files ahead: the third slow file waits 1.2 s in its queue and takes 0.6 s itself
    paths = ["slow1", "slow2", "slow3", "slow4"]
    with DecoderPool(1, decoders.name_or_hang, failed=str, timeout=1.0) as pool:
        assert [r for _, r in sorted(pool.map(enumerate(paths)))] == paths


def test_a_hung_decoder_with_a_child_holding_its_pipe_is_still_charged(tmp_path, monkeypatch):
    pid_file = tmp_path / "child.pid"
    monkeypatch.setenv("CHILD_PID", str(pid_file))
    try:
        with DecoderPool(1, decoders.hang_with_a_child, failed=str, timeout=1.0) as pool:
            got = list(pool.map_in_order(["a", "b_hang", "c"], [1, 1, 1], ahead=1))
        assert got == ["a", f"b_hang: {HUNG}", "c"]
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_worker_that_cannot_start_stops_the_pool_in_one_line(monkeypatch):
    monkeypatch.setattr(pool_module, "START_TIMEOUT_S", 1.0)
    monkeypatch.setenv("HANG_ON_IMPORT", "1")
    with pytest.raises(XlsrError, match=r"^a decoding worker did not start within 1 s"):
        with DecoderPool(1, decoders.started_late, failed=str, timeout=5.0) as pool:
            list(pool.map_in_order(["a"], [1], ahead=1))


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_timeout_that_is_not_positive_is_refused(timeout):
    with pytest.raises(XlsrError, match="decode timeout: must be more than 0 seconds"):
        DecoderPool(1, decoders.name_or_hang, failed=str, timeout=timeout)
