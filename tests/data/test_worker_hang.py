"""A training data worker whose decoder hangs on a file (data/worker_crash.py, BatchLoader's decode_timeout): the
worker is stopped once the loader has waited decode_timeout for a batch and the worker has been on that one file
longer; the file is charged as bad, the pass goes on with the same batches less that file, and the file is not
decoded again in the run nor after a resume. Slow files within the limit are waited for."""

import logging
import os
import time

import pytest
import torch
from data_fixtures import PhoneVocab
from test_worker_crash import PRETRAIN, _corpus, _unreadable, bad_again_without_decoding
from torch.utils.data import get_worker_info

from xlsr.data import batching
from xlsr.data.audio import load_audio
from xlsr.data.batching import finetune_loader, pretrain_loader
from xlsr.data.worker_crash import is_timeout
from xlsr.errors import XlsrError
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.pretrain import PretrainConfig

NAMES = [f"u{i}" for i in range(10)] + ["crash_hang"] + [f"v{i}" for i in range(7)]


def _hanging(log_path, slow_s=0.0):
    """load_audio in a worker, except that a *hang* file never returns (and is logged as it starts); every other
    file takes `slow_s` more seconds."""
    def load(path, *args, **kwargs):
        if "hang" in os.path.basename(str(path)):
            assert get_worker_info() is not None, "the hanging file was decoded in the trainer's own process"
            with open(log_path, "a") as f:
                f.write(f"{path}\n")
            while True:
                time.sleep(1)
        time.sleep(slow_s)
        return load_audio(path, *args, **kwargs)
    return load


def _started(log_path):
    return log_path.read_text().splitlines() if log_path.exists() else []


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_a_hanging_decoder_costs_its_file_not_the_run(tmp_path, monkeypatch, caplog, task):
    utts = _corpus(tmp_path, NAMES)
    vocab = PhoneVocab([u.phones for u in utts])

    def loader(num_workers, **kw):
        if task == "pretrain":
            return pretrain_loader(utts, **PRETRAIN, num_workers=num_workers, max_bad_share=0.2, **kw)
        return finetune_loader(utts, vocab, max_tokens=40000, seed=3, num_workers=num_workers, max_bad_share=0.2,
                               **kw)

    monkeypatch.setattr(batching, "load_audio", _unreadable)  # the reference: the same files, that one unreadable
    reference = [b.waveforms for b in loader(0)]

    started = tmp_path / "started.txt"
    monkeypatch.setattr(batching, "load_audio", _hanging(started))
    hanging = loader(2, decode_timeout=1.0)
    caplog.set_level(logging.WARNING, logger="xlsr.data.batching")
    caplog.clear()
    begun = time.monotonic()
    got = [b.waveforms for b in hanging]
    assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))
    assert time.monotonic() - begun < 30  # a timeout of 1 s waited once or twice, and new workers
    hung = len(_started(started))  # 1, or 2 where both workers had a batch drawing the file before it was known
    assert hung >= 1
    assert hanging.bad_files == hanging.epoch_bad_files == 1
    warned = [r.getMessage() for r in caplog.records if "crash_hang.wav" in r.getMessage()]
    assert len(warned) == 1 and "the audio decoder hung on it" in warned[0]
    assert "more than decode_timeout=1" in warned[0]

    # the next epoch and a resumed run count the file as bad again, without decoding it (which would hang)
    bad_again_without_decoding(hanging, lambda: loader(2, decode_timeout=1.0), NAMES.index("crash_hang"),
                               lambda: len(_started(started)))


def test_slow_files_within_the_limit_are_waited_for(tmp_path, monkeypatch):
    """Each file takes 0.4 s, a batch several of them: the loader waits longer than decode_timeout (1 s) for a
    batch, but no worker is that long on one file, so nothing is charged and the batches are the same."""
    utts = _corpus(tmp_path, [f"u{i}" for i in range(8)])
    reference = [b.waveforms for b in pretrain_loader(utts, **PRETRAIN, num_workers=0)]
    monkeypatch.setattr(batching, "load_audio", _hanging(tmp_path / "started.txt", slow_s=0.4))
    waits = []
    monkeypatch.setattr(batching, "is_timeout", lambda exc: waits.append(exc) or is_timeout(exc))
    slow = pretrain_loader(utts, **PRETRAIN, num_workers=1, decode_timeout=1.0)
    assert max(len(p.indices) for p in slow.plans()) >= 3  # a batch takes 1.2 s or more to decode
    got = [b.waveforms for b in slow]
    assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))
    assert slow.bad_files == 0
    assert waits and all(is_timeout(exc) for exc in waits)  # the loader did wait past decode_timeout, and went on
    slow.close()


@pytest.mark.parametrize("config", [PretrainConfig, FinetuneConfig])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), 1e7])
def test_a_decode_timeout_that_is_not_seconds_is_refused(config, value, tmp_path):
    required = {"data": str(tmp_path)} if config is PretrainConfig else {"train": ["t.jsonl"], "dev": ["d.jsonl"]}
    with pytest.raises(XlsrError, match="decode_timeout: must be 0 \\(no limit\\) or more seconds"):
        config(out=str(tmp_path / "run"), decode_timeout=value, **required)


def test_the_loader_refuses_a_timeout_that_is_not_positive(tmp_path):
    utts = _corpus(tmp_path, ["u0", "u1"])
    with pytest.raises(XlsrError, match="decode_timeout: must be more than 0 seconds"):
        pretrain_loader(utts, **PRETRAIN, num_workers=1, decode_timeout=0.0)


def test_a_long_wait_with_no_file_to_blame_is_said_once_and_waited_on(tmp_path, monkeypatch, caplog):
    """A worker busy outside decoding for over three decode_timeouts (a slow collate here): no file is charged,
    one warning says what the loader waits on, and the batches are the same."""
    utts = _corpus(tmp_path, [f"u{i}" for i in range(8)])
    reference = [b.waveforms for b in pretrain_loader(utts, **PRETRAIN, num_workers=0)]
    marker = tmp_path / "slowed"
    real_crop = batching.crop_batch

    def slow_once(*args, **kwargs):
        if not marker.exists():
            marker.write_text("")
            time.sleep(3.6)
        return real_crop(*args, **kwargs)

    monkeypatch.setattr(batching, "crop_batch", slow_once)
    slow = pretrain_loader(utts, **PRETRAIN, num_workers=1, decode_timeout=1.0)
    caplog.set_level(logging.WARNING, logger="xlsr.data.batching")
    got = [b.waveforms for b in slow]
    assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))
    assert slow.bad_files == 0
    said = [r.getMessage() for r in caplog.records if "no batch from the data workers" in r.getMessage()]
    assert said == ["rank 0: no batch from the data workers for 3 s, and none of them has been decoding one file for "
                    "longer than decode_timeout=1; waiting on (a slow file system, or a worker stuck outside audio "
                    "decoding)"]
    slow.close()
