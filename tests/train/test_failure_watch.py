"""The failure watch of each rank, on a store like torchrun's (here an in-memory one): a rank ends when a peer
announces its failure; a rank that announced its own failure is not ended by it (it prints its own error and exits 2);
the group of a restarted attempt, which torchrun may give the same store, does not read the failure that ended the
group before it."""

from __future__ import annotations

import time

import pytest
import torch.distributed as dist

from xlsr.errors import XlsrError
from xlsr.train import elastic
from xlsr.train.distributed import DistInfo


@pytest.fixture
def store(monkeypatch):
    """One store shared by every watch made in the test (as the ranks of a group, and torchrun's restarts, share
    the agent's); watches poll often, and a watch's ending is recorded instead of ending the test."""
    shared = dist.HashStore()
    monkeypatch.setattr(elastic, "_group_store", lambda: shared)
    monkeypatch.setattr(elastic, "broadcast_object", lambda obj, info: obj)  # each watch: a group of its own
    monkeypatch.setattr(elastic, "POLL_SECONDS", 0.02)
    ended = []

    def end_for_peer(self, message):  # instead of os._exit: recorded, and this watch stops
        ended.append((self, message))
        self._stop.set()

    monkeypatch.setattr(elastic.FailureWatch, "end_for_peer", end_for_peer)
    return ended


def _watch(tmp_path, rank: int) -> elastic.FailureWatch:
    return elastic.FailureWatch(DistInfo(rank=rank, world_size=2), tmp_path)


def _settle() -> None:
    time.sleep(0.3)  # many polls


def test_a_peers_failure_ends_the_rank_but_its_own_does_not(tmp_path, store):
    first = _watch(tmp_path, 1)
    peer = _watch(tmp_path, 0)
    peer._key = first._key  # the same group: rank 0's token, broadcast
    try:
        first.announce(XlsrError("data/en/train.jsonl: 12 of 40 files unreadable"))
        _settle()
    finally:
        first.close()
        peer.close()
    assert store == [(peer, "rank 1 failed: data/en/train.jsonl: 12 of 40 files unreadable")]


def test_a_restarted_group_on_the_same_store_does_not_read_the_last_ones_failure(tmp_path, store):
    ended_group = _watch(tmp_path, 1)
    ended_group.announce(RuntimeError("gloo: connection reset by peer"))  # a peer was killed: torchrun restarts
    ended_group.close()
    restarted = _watch(tmp_path, 0)
    try:
        _settle()
        assert restarted.peer_failure() is None
    finally:
        restarted.close()
    assert store == []


@pytest.mark.parametrize("own, ends_for_peer", [
    (RuntimeError("gloo: connection closed by peer"), True),  # the collective broke because the peer left first
    (XlsrError("data/en/dev.jsonl: 3 of 4 files unreadable"), False),  # an error of its own: it says so itself
], ids=["broken-collective", "own-error"])
def test_a_rank_failing_after_a_peer_announced_ends_quietly_only_if_its_error_came_from_that(tmp_path, store,
                                                                                           monkeypatch, own,
                                                                                           ends_for_peer):
    monkeypatch.setattr(elastic, "POLL_SECONDS", 60.0)  # the watch thread stays out of it
    with pytest.raises(type(own)):
        with elastic.one_failure_ends_all(DistInfo(rank=0, world_size=2), tmp_path) as watch:
            watch._store.set(watch._key, "rank 1 failed: out of memory")  # what the peer announced
            raise own
    assert [message for _, message in store] == (["rank 1 failed: out of memory"] if ends_for_peer else [])
    if not ends_for_peer:
        assert watch._store.get(watch._key).decode() == f"rank 0 failed: {own}"  # announced for the others
