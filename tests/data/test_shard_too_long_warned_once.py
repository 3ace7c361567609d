"""Sharded fine-tuning skips utterances longer than the length limit as the manifest path skips them, and says so:
once per run for each language that has one, naming the limit and the first one, however often the streams re-read
it (α upsampling, epochs, a restart of the streams); a language without one gets no such warning."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shard_index import read_index
from xlsr.data.shard_loader import ShardLoader
from xlsr.data.shard_stream import StreamSpec
from xlsr.data.shards import write_shards

SR = 16000
LIMIT = 20_000  # max_tokens
LENGTHS = {"aa": [8000, 24000, 9000, 12000, 30000, 10000], "bb": [7000, 9000, 11000]}  # aa-01, aa-04: too long


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> StreamSpec:
    root = tmp_path_factory.mktemp("corpus")
    for lang, lengths in LENGTHS.items():
        utts = []
        for i, n in enumerate(lengths):
            path = root / lang / "wav" / f"{i:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR), SR)
            utts.append(Utterance(str(path), n, lang, phones="a b", id=f"{lang}-{i:02d}"))
        write_manifest(root / lang / "train.jsonl", utts)
    out = tmp_path_factory.mktemp("shards")
    write_shards(root, out, shard_size=60_000, splits=["train"], show_progress=False)
    index = read_index(out)
    return StreamSpec(index.root, tuple(index.of_split("train")), max_tokens=LIMIT, pretrain=False,
                      labeler=lambda meta: [1], shuffle_buffer=4, window_batches=1, alpha=0.3)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "xlsr.data.shard_loader"]


def test_too_long_utterances_are_skipped_and_named_once_per_language_per_run(spec, caplog):
    loader = ShardLoader(spec, epoch_batches=12)
    seen = set()
    with caplog.at_level(logging.WARNING, logger="xlsr.data.shard_loader"):
        for epoch in range(3):  # every utterance read several times over
            loader.set_epoch(epoch)
            seen.update(i for batch in loader for i in batch.ids)
            loader.close()  # the streams start again, from their states: their reports too
    said = [w for w in _warnings(caplog) if "longer than" in w]
    assert len(said) == 1, said  # aa only: bb has none
    where = Path(spec.root) / "train"
    assert said[0].startswith(f"{where}: aa utterances longer than {LIMIT} samples (max_tokens, max_sample_size) "
                              "are skipped")
    assert ("utterance aa-01, 24000 samples" in said[0]) != ("utterance aa-04, 30000 samples" in said[0])
    assert "\n" not in said[0]
    assert seen == {f"{lang}-{i:02d}" for lang, ls in LENGTHS.items() for i, n in enumerate(ls) if n <= LIMIT}
