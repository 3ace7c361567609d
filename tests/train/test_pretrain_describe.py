"""The line a pretraining run starts with counts the utterances it trains on, not those its manifests list."""

import numpy as np

from xlsr.data.index_cache import open_manifest
from xlsr.train.distributed import DistInfo
from xlsr.train.pretrain import PretrainConfig, PretrainTask

from ._audio import TINY_MODEL, make_corpus


def test_describe_counts_the_kept_utterances_and_says_how_many_were_too_short(tmp_path):
    data = make_corpus(tmp_path / "tones", per_lang=6, splits=("train",))  # 1.0-1.3 s each
    lengths = np.concatenate([open_manifest(p).num_samples for p in sorted(data.glob("*/train.jsonl"))])
    min_samples = int(np.median(lengths)) + 1  # about half are shorter
    short = int((lengths < min_samples).sum())
    assert 0 < short < len(lengths)
    task = PretrainTask(PretrainConfig(data=str(data), out=str(tmp_path / "run"), preset="tiny", model=dict(TINY_MODEL),
                                       max_tokens=64000, min_sample_size=min_samples, max_sample_size=16000,
                                       num_workers=0, valid_every=0, progress=False, tensorboard=False, device="cpu"))
    task.setup(DistInfo())
    first = task.describe().splitlines()[0]
    assert first.startswith(f"pretraining on {len(lengths) - short} utterances in {data} ")
    assert f"({short} of {len(lengths)} skipped: shorter than min_sample_size={min_samples} samples)" in first
