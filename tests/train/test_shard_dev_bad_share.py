"""Pretraining's dev sets count bad files against the run's --max-bad-share, a shard folder's (`shard_valid_loaders`)
as a manifest's: not at the loader's default 5%."""

import shutil
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
from data_fixtures import tone_shards  # noqa: E402

from xlsr.data.shard_index import read_index  # noqa: E402
from xlsr.train.distributed import DistInfo  # noqa: E402
from xlsr.train.pretrain import PretrainConfig, PretrainTask  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_shard_dev_set_counts_bad_files_against_the_runs_max_bad_share(tmp_path_factory, tmp_path):
    dst = tmp_path / "shards"
    shutil.copytree(tone_shards(tmp_path_factory), dst)
    victim = next(s for s in read_index(dst).of_split("train") if s.lang == "aa" and s.utterances >= 2)
    tar = dst / victim.path
    with tarfile.open(tar) as t:
        first = [m for m in t.getmembers() if m.name.endswith(".json")][0]
    tar.write_bytes(tar.read_bytes()[:first.offset_data + first.size + 100])  # cut in its 2nd utterance: a few of 14
    cfg = PretrainConfig(data=str(dst), valid_split="train", max_bad_share=0.5, out=str(tmp_path / "run"),
                         device="cpu", num_workers=0, max_tokens=40_000, min_sample_size=4000,
                         max_sample_size=16000, feature_health_frames=0)
    task = PretrainTask(cfg)
    task.setup(DistInfo())
    for batches in task.valid_sets().values():
        list(batches)  # fails: "... more than max_bad_share=0.05" although the run allows 0.5
