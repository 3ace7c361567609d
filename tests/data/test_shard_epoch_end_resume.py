"""A sharded run stopped right at the end of an epoch and resumed: it goes on with the next epoch, as the run that
was not stopped does (the same epochs, each of its full length, none replayed), from where each stream stood; and
`set_epoch` on the epoch just completed starts it over, as the manifest loader's does."""

from itertools import islice
from types import SimpleNamespace

import pytest
from data_fixtures import tone_shards, tone_spec

from xlsr.data.shard_loader import ShardLoader
from xlsr.data.shard_stream import StreamSpec
from xlsr.train.pretrain import PretrainTask
from xlsr.train.trainer import Trainer

EPOCH = 5  # batches per epoch


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> StreamSpec:
    """Short tones of two languages in ~7 shards, ids <lang>-NN."""
    return tone_spec(tone_shards(tmp_path_factory))


def _training(loader: ShardLoader, epoch: int = 0, batches_in_epoch: int = 0) -> SimpleNamespace:
    """The Trainer's batch stream over a task that trains from `loader` (PretrainTask's `train_batches`), at the
    Trainer's (epoch, batches_in_epoch) of a checkpoint."""
    task = SimpleNamespace(batch_to_device=lambda batch, device: batch)
    task.train_batches = lambda e, skip=0: PretrainTask.train_batches(SimpleNamespace(loader=loader), e, skip)
    trainer = SimpleNamespace(task=task, epoch=epoch, batches_in_epoch=batches_in_epoch, device=None,
                              info=SimpleNamespace(distributed=False, rank=0, world_size=1))
    return trainer


def _take(trainer: SimpleNamespace, n: int) -> list[tuple[int, list[str]]]:
    """(the Trainer's epoch, the batch's ids) of the next n batches."""
    out = []
    for batch in islice(Trainer._batch_stream(trainer), n):
        out.append((trainer.epoch, batch.ids))
    return out


def test_a_run_resumed_at_the_end_of_an_epoch_goes_on_with_the_next_epoch_from_its_streams(spec):
    straight = _take(_training(ShardLoader(spec, epoch_batches=EPOCH)), 3 * EPOCH)
    first = ShardLoader(spec, epoch_batches=EPOCH)
    stopped = _take(_training(first), EPOCH)  # a checkpoint right after the epoch's last batch
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (0, EPOCH)
    resumed_loader = ShardLoader(spec, epoch_batches=EPOCH)
    resumed_loader.load_state_dict(state)
    resumed = stopped + _take(_training(resumed_loader, epoch=0, batches_in_epoch=EPOCH), 2 * EPOCH)
    # the same epochs, each of its full length: epoch 0 is not replayed, and no epoch is skipped
    assert [e for e, _ in resumed] == [e for e, _ in straight] == [0] * EPOCH + [1] * EPOCH + [2] * EPOCH
    assert resumed[:EPOCH] == straight[:EPOCH]
    # epochs 1 and 2 continue the streams from the checkpoint's states (exact at shard granularity: the shards
    # open at the checkpoint are read again, so not the uninterrupted run's batches): what any resume from it reads
    again = ShardLoader(spec, epoch_batches=EPOCH)
    again.load_state_dict(state)
    continued = []
    for epoch in (1, 2):
        again.set_epoch(epoch)
        continued += [b.ids for b in again]
    assert [ids for _, ids in resumed[EPOCH:]] == continued


def test_set_epoch_on_the_epoch_just_completed_starts_it_over_and_keeps_a_partial_one(spec):
    loader = ShardLoader(spec, epoch_batches=EPOCH)
    assert len(list(loader)) == EPOCH and loader.position == EPOCH
    loader.set_epoch(0)  # complete: started over, as BatchLoader.set_epoch
    assert (loader.epoch, loader.position) == (0, 0) and len(list(loader)) == EPOCH
    partial = ShardLoader(spec, epoch_batches=EPOCH)
    assert len(list(islice(partial, 2))) == 2
    partial.set_epoch(0)  # not complete: a resumed run may call this, the position stays
    assert partial.position == 2 and len(list(partial)) == EPOCH - 2
