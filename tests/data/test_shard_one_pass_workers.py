"""A one-pass shard loader (validation's kind) with worker processes reads its pass and stops: a worker whose share
of the pass is read exits as DataLoader tells it to, which is no death to charge; a decoder crash in the pass costs
its utterance and the pass goes on to its end."""

import os
import resource
import signal
import time
from collections import Counter
from dataclasses import replace

import pytest
from data_fixtures import TONE_SIZES, tone_shards, tone_spec

from xlsr.data import shard_stream
from xlsr.data.audio import decode_audio
from xlsr.data.shard_loader import ShardLoader
from xlsr.data.shard_stream import StreamSpec

VICTIM = "aa-03"
EVERY = {f"{lang}-{i:02d}" for lang, n in TONE_SIZES.items() for i in range(n)}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> StreamSpec:
    return replace(tone_spec(tone_shards(tmp_path_factory)), passes=1)


def _ids(loader: ShardLoader) -> Counter:
    return Counter(i for batch in loader for i in batch.ids)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # three workers on a small machine
def test_a_worker_with_nothing_left_to_read_ends_and_the_pass_goes_on(spec):
    """bb's two shards among three workers, one utterance a batch: the third worker has no shard, its stream ends at
    once and DataLoader lets its process exit while the others still stream."""
    bb = replace(spec, shards=tuple(s for s in spec.shards if s.lang == "bb"), max_utterances=1)
    assert len(bb.shards) == 2
    loader = ShardLoader(bb, num_workers=3)
    try:
        every_bb = Counter(i for i in EVERY if i.startswith("bb"))
        assert _ids(loader) == every_bb
        assert _ids(loader) == every_bb  # and again: each iteration is the whole pass
        assert loader.epoch_bad_files == 0
    finally:
        loader.close()


def test_a_decoder_crash_in_a_one_pass_loader_costs_the_utterance_and_the_pass_ends(spec, tmp_path, monkeypatch):
    decodings = tmp_path / "decodings"

    def crashing(data, name, *args, **kwargs):
        if name.endswith(f"utterance {VICTIM}"):
            with open(decodings, "a") as f:
                f.write(name + "\n")
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(10)
        return decode_audio(data, name, *args, **kwargs)

    monkeypatch.setattr(shard_stream, "decode_audio", crashing)
    loader = ShardLoader(spec, num_workers=2, max_bad_share=0.5)
    try:
        # the shards open at the crash are read again from their start: an utterance may come twice, none is lost
        assert set(_ids(loader)) == EVERY - {VICTIM}
        assert loader.epoch_bad_files == 1 and len(decodings.read_text().splitlines()) == 1
    finally:
        loader.close()
