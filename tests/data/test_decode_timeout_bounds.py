"""A decode timeout no queue wait can take is refused in one line where it is given: infinity, or more seconds than
multiprocessing's wait holds (2**31 ms: DataLoader's `timeout` past it raises OverflowError at the first batch, a
traceback), in the pool and in the training loader alike."""

import _hanging_decoders as decoders
import pytest
from test_worker_crash import PRETRAIN, _corpus

from xlsr.data.batching import pretrain_loader
from xlsr.data.decoder_pool import MAX_TIMEOUT_S, DecoderPool
from xlsr.errors import XlsrError


@pytest.mark.parametrize("timeout", [float("inf"), 1e7])
def test_the_pool_refuses_a_timeout_no_wait_can_take(timeout):
    with pytest.raises(XlsrError, match=r"^decode timeout: must be more than 0 seconds and at most 1e\+06"):
        DecoderPool(1, decoders.name_or_hang, failed=str, timeout=timeout)


@pytest.mark.parametrize("timeout", [float("inf"), 1e7])
def test_the_loader_refuses_a_timeout_no_wait_can_take(tmp_path, timeout):
    utts = _corpus(tmp_path, ["u0", "u1"])
    with pytest.raises(XlsrError, match=r"^decode_timeout: must be more than 0 seconds and at most 1e\+06"):
        pretrain_loader(utts, **PRETRAIN, num_workers=1, decode_timeout=timeout)


def test_the_most_allowed_is_taken(tmp_path):
    utts = _corpus(tmp_path, ["u0", "u1", "u2"])
    loader = pretrain_loader(utts, **PRETRAIN, num_workers=1, decode_timeout=MAX_TIMEOUT_S)
    try:
        assert len(list(loader)) == len(loader.plans())  # DataLoader's waits of that long do not overflow
    finally:
        loader.close()
    with DecoderPool(1, decoders.name_or_hang, failed=str, timeout=MAX_TIMEOUT_S) as pool:
        assert list(pool.map_in_order(["a", "b"], [1, 1], ahead=1)) == ["a", "b"]
