"""Sharded pretraining drops the utterances the in-memory loader drops: shorter than min_sample_size, not equal."""

from pathlib import Path

from xlsr.data.shard_index import ShardInfo
from xlsr.data.shard_stream import ConsumerStream, StreamSpec

SHARD = (ShardInfo("it/train-0.tar", "it", "train", 10, 160000, 1, "0"),)  # never opened here


def test_an_utterance_of_exactly_min_sample_size_is_kept():
    stream = ConsumerStream(StreamSpec(Path("."), SHARD, max_tokens=64000, min_sample_size=4000), 0, 1)
    assert [stream._keep({"num_samples": n}) for n in (3999, 4000, 4001)] == [False, True, True]
    no_minimum = ConsumerStream(StreamSpec(Path("."), SHARD, max_tokens=64000), 0, 1)
    assert [no_minimum._keep({"num_samples": n}) for n in (0, 1)] == [False, True]  # never an empty one
