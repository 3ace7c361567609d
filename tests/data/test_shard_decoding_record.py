"""A shard stream decoded in the training process and the run folder's decoding record (data/decoding_record.py):
an utterance that crashed another rank's process is skipped from this loader's next epoch on, as the manifest loader
skips it from its next pass; and an utterance is the same to the record (and to the loader state) whether the shard
folder is spelled relative or absolute, as a command run from a script and by hand may spell it."""

import json
import logging
from dataclasses import replace

import pytest
from data_fixtures import tone_shards, tone_spec

from xlsr.data.batching import record_decoding
from xlsr.data.decoding_record import CRASHED, FOLDER, DecodingRecord
from xlsr.data.shard_loader import ShardLoader, shard_pretrain_loader, shard_valid_loaders
from xlsr.data.shard_reader import ShardSample, read_shard
from xlsr.data.shard_stream import utterance_key

VICTIM = "aa-03"
PRETRAIN = dict(max_tokens=40_000, pretrain=True, min_sample_size=1000, max_sample_size=20_000)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tone_shards(tmp_path_factory)


def _victim_key(spec) -> str:
    """The key of VICTIM's utterance, its shard spelled as `spec.root` spells it."""
    for info in spec.shards:
        for got in read_shard(spec.root, info):
            if isinstance(got, ShardSample) and got.meta.get("id") == VICTIM:
                return utterance_key(got)
    raise AssertionError(f"no {VICTIM} in the shards")


def _recorded(record: DecodingRecord, monkeypatch) -> list[str]:
    """The keys `record` is asked to keep while they are decoded, as a list that grows."""
    keys, decoding = [], record.decoding

    def noted(key):
        keys.append(key)
        return decoding(key)

    monkeypatch.setattr(record, "decoding", noted)
    return keys


def _crashed_elsewhere(run, key: str) -> None:
    """What another rank's record does at its first decoding after its process died decoding `key`."""
    (run / FOLDER).mkdir(parents=True, exist_ok=True)
    with open(run / FOLDER / CRASHED, "a", encoding="utf-8") as f:
        f.write(json.dumps({"audio": key, "rank": 1}) + "\n")


def _watched_loader(spec, run):
    loader = ShardLoader(spec, epoch_batches=12, max_bad_share=0.5)
    record = DecodingRecord(run)
    return record_decoding(loader, record), record


def test_an_utterance_that_crashed_another_rank_is_skipped_from_the_next_epoch_on(shards, tmp_path, monkeypatch,
                                                                                   caplog):
    spec = replace(tone_spec(shards), alpha=1.0)
    control, record = _watched_loader(spec, tmp_path / "control")
    decoded = _recorded(record, monkeypatch)
    list(control)
    control.set_epoch(1)
    next(iter(control))
    victim = decoded[-1]  # decoded for the first batch of epoch 1

    loader, record = _watched_loader(spec, tmp_path / "run")
    decoded = _recorded(record, monkeypatch)
    list(loader)
    assert decoded and loader.epoch_bad_files == 0
    _crashed_elsewhere(tmp_path / "run", victim)  # another rank's process died on it meanwhile
    decoded.clear()
    loader.set_epoch(1)
    with caplog.at_level(logging.WARNING):
        list(loader)
    assert decoded and victim not in decoded
    assert loader.epoch_bad_files == 1
    assert any(r.getMessage() == f"skipping bad audio: {record.crashed[victim]}" for r in caplog.records)


def test_the_record_of_an_absolute_spelling_is_known_to_a_relative_one(shards, tmp_path, monkeypatch):
    victim = _victim_key(tone_spec(shards))  # the shard folder spelled absolute, as tmp_path is
    assert victim.startswith(str(shards))
    _crashed_elsewhere(tmp_path / "run", victim)
    record = DecodingRecord(tmp_path / "run")
    decoded = _recorded(record, monkeypatch)
    monkeypatch.chdir(shards.parent)
    loaders = shard_valid_loaders(shards.name, "train", None, max_bad_share=0.5, **PRETRAIN)  # spelled relative
    loader = record_decoding(loaders["aa"], record)
    list(loader)
    member = victim.rpartition(":")[2]
    assert decoded and not [key for key in decoded if key.endswith(f":{member}")]
    assert loader.epoch_bad_files == 1


def test_the_loader_state_of_an_absolute_spelling_is_known_to_a_relative_one(shards, tmp_path, monkeypatch):
    """An utterance charged in the loader state (by its key) is the same utterance after a resume that spells the
    shard folder otherwise: not decoded again, and not charged twice in the epoch."""
    victim = _victim_key(tone_spec(shards))
    options = dict(max_tokens=40_000, min_sample_size=1000, max_sample_size=20_000, alpha=1.0, epoch_size=60,
                   max_bad_share=0.5)
    state = shard_pretrain_loader(shards, **options).state_dict()
    line = "the audio decoder crashed on it (its data worker was killed by SIGSEGV); skipped for the rest of this run"
    state.update(crashed=[(victim, line)], charged=[victim], epoch_bad_files=1, bad_files=1)
    monkeypatch.chdir(shards.parent)
    resumed = shard_pretrain_loader(shards.name, **options)
    resumed.load_state_dict(state)
    record = DecodingRecord(tmp_path / "run")
    decoded = _recorded(record, monkeypatch)
    list(record_decoding(resumed, record))
    member = victim.rpartition(":")[2]
    assert decoded and not [key for key in decoded if key.endswith(f":{member}")]
    assert resumed.epoch_bad_files == 1
