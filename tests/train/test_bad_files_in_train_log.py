"""The bad audio files a run skipped are in its log.jsonl, not only on each rank's stderr: every train record holds the
loader's counts (over the run and the epoch) as they stand at its update; under DDP summed over the ranks.
A run whose training files are all unreadable under max_bad_share=1 says so (not that it made no batches)."""

import os
import socket
import types

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.train import checkpoint as ckpt
from xlsr.train.finetune import FinetuneTask
from xlsr.train.monitor import LogWindow, loader_totals, read_log
from xlsr.train.pretrain import PretrainConfig, pretrain
from xlsr.train.trainer import Trainer, TrainerConfig

from . import _ranks
from ._audio import TINY_MODEL, make_corpus
from ._toy import ToyTask


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), preset="tiny", model=dict(TINY_MODEL), max_updates=5, lr=2e-3,
                warmup_updates=2, max_tokens=64000, min_sample_size=8000, max_sample_size=16000, num_workers=0,
                log_every=1, valid_every=0, save_every=0, progress=False, tensorboard=False, device="cpu",
                feature_health_frames=0)
    base.update(kw)
    return PretrainConfig(**base)


def test_a_record_holds_the_running_totals_at_its_update_not_their_mean():
    window = LogWindow()
    window.add({"loss": 2.0, "bad_files": 1, "epoch_bad_files": 1}, seconds=1.0, audio_seconds=1.0)
    window.add({"skipped": True}, seconds=1.0, audio_seconds=1.0)
    window.add({"loss": 4.0, "bad_files": 3, "epoch_bad_files": 0}, seconds=1.0, audio_seconds=1.0)
    assert window.summary() == {"loss": 3.0, "bad_files": 3, "epoch_bad_files": 0}


def test_a_loader_gives_the_totals_it_keeps():
    shard_loader = types.SimpleNamespace(bad_files=7, epoch_bad_files=2)  # a shard loader counts no short files
    assert loader_totals(shard_loader) == {"bad_files": 7, "epoch_bad_files": 2}


class _CountingToy(ToyTask):
    """A toy task whose rank r has skipped r + 1 bad files per update so far."""

    def data_totals(self):
        import torch.distributed as dist
        rank = dist.get_rank() if dist.is_initialized() else 0
        return {"bad_files": (rank + 1) * self.updates_started, "epoch_bad_files": rank}

    def on_update_start(self, model, update):
        self.updates_started = update + 1
        return super().on_update_start(model, update)


def _counting_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Trainer(TrainerConfig(out=out, max_updates=3, lr=1e-2, warmup_updates=0, device="cpu", log_every=1,
                          valid_every=0, save_every=0, progress=False, tensorboard=False), _CountingToy(rows=4)).fit()


def test_under_ddp_the_log_holds_the_totals_summed_over_the_ranks(tmp_path):
    _ranks.run(_counting_worker, (2, _free_port(), str(tmp_path / "ddp")))
    records = [r for r in read_log(tmp_path / "ddp" / "log.jsonl") if r.get("split") == "train"]
    assert [(r["bad_files"], r["epoch_bad_files"]) for r in records] == [(3, 1), (6, 1), (9, 1)]  # (1 + 2) x u, 0 + 1


def test_the_train_log_records_the_bad_files_the_loader_skipped(tmp_path):
    data = make_corpus(tmp_path / "tones", splits=("train",))
    (data / "aa" / "wav" / "train_0.wav").write_bytes(b"RIFF broken")  # 1 of the 8 training files
    run = pretrain(_cfg(data, tmp_path / "run", max_bad_share=0.2))
    records = [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"]
    assert len(records) == 5
    run_totals = [r["bad_files"] for r in records]
    assert run_totals == sorted(run_totals) and run_totals[-1] >= 1  # counted over the run: never down
    assert all(0 <= r["epoch_bad_files"] <= 1 and r["short_files"] == r["epoch_short_files"] == 0 for r in records)
    loader = ckpt.load_trainer_state(run / "checkpoints" / "last")["task"][0]["loader"]
    assert (records[-1]["bad_files"], records[-1]["epoch_bad_files"]) == (loader["bad_files"],
                                                                           loader["epoch_bad_files"])


def test_a_run_whose_training_files_are_all_bad_says_so(tmp_path):
    data = make_corpus(tmp_path / "tones", splits=("train",))
    for wav in data.glob("*/wav/train_*.wav"):
        wav.write_bytes(b"RIFF broken")
    with pytest.raises(XlsrError, match=r"^every one of 8 audio files in epoch 0 is bad .*nothing to train on; "
                                        r"check the audio paths of .*train\.jsonl"):
        pretrain(_cfg(data, tmp_path / "run", max_bad_share=1.0))


def test_fine_tuning_gives_its_loader_s_totals():
    loader = types.SimpleNamespace(bad_files=4, epoch_bad_files=1, short_files=0, epoch_short_files=0)
    task = types.SimpleNamespace(_train_loader=loader)
    assert FinetuneTask.data_totals(task) == {"bad_files": 4, "epoch_bad_files": 1, "short_files": 0,
                                              "epoch_short_files": 0}
