"""`ShardLoader.close()` stops the streams where the batches handed over left them: a later iteration goes on from
the consumers' states, as a loader resumed from its state_dict does, not from the start of the streams."""

from dataclasses import replace
from itertools import islice

import pytest
from data_fixtures import tone_shards, tone_spec

from xlsr.data.shard_loader import ShardLoader
from xlsr.data.shard_stream import StreamSpec

TAKEN = 6  # batches before the close


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> StreamSpec:
    """Short tones of two languages in several shards, ids <lang>-NN."""
    return tone_spec(tone_shards(tmp_path_factory))


def _ids(loader: ShardLoader, n: int) -> list[list[str]]:
    return [batch.ids for batch in islice(iter(loader), n)]


def test_iterating_after_close_goes_on_from_the_consumers_states(spec):
    closed = ShardLoader(spec, epoch_batches=100)
    before = _ids(closed, TAKEN)
    closed.close()
    after = _ids(closed, TAKEN)

    stopped = ShardLoader(spec, epoch_batches=100)
    assert _ids(stopped, TAKEN) == before
    resumed = ShardLoader(spec, epoch_batches=100)
    resumed.load_state_dict(stopped.state_dict())
    assert after == _ids(resumed, TAKEN)  # what a resume from the state at the close reads
    assert after != before  # not the streams' start again
    assert closed.position == 2 * TAKEN


def test_a_second_close_without_batches_between_keeps_the_states(spec):
    closed = ShardLoader(spec, epoch_batches=100)
    _ids(closed, TAKEN)
    closed.close()
    closed.close()
    stopped = ShardLoader(spec, epoch_batches=100)
    _ids(stopped, TAKEN)
    resumed = ShardLoader(spec, epoch_batches=100)
    resumed.load_state_dict(stopped.state_dict())
    assert _ids(closed, TAKEN) == _ids(resumed, TAKEN)


def test_a_one_pass_loader_starts_its_pass_over_after_close(spec):
    loader = ShardLoader(replace(spec, passes=1))
    whole = [batch.ids for batch in loader]
    _ids(loader, 2)
    loader.close()
    assert [batch.ids for batch in loader] == whole


def test_a_loader_with_worker_processes_goes_on_from_the_states_too(spec):
    closed = ShardLoader(spec, epoch_batches=100, num_workers=1)
    before = _ids(closed, TAKEN)
    closed.close()  # its worker stopped now
    after = _ids(closed, TAKEN)
    closed.close()
    stopped = ShardLoader(spec, epoch_batches=100)
    _ids(stopped, TAKEN)
    resumed = ShardLoader(spec, epoch_batches=100)
    resumed.load_state_dict(stopped.state_dict())
    assert after == _ids(resumed, TAKEN) and after != before
