"""Runs from one --init share the frozen CNN's feature cache (`finetune(cfg, feature_caches=...)`), a resumed one as
well: a resumed run builds its model without --init's weights, and the cache is tied to the CNN the run trains with
(its checkpoint's), not to the random one the model was built with."""

from pathlib import Path

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune

from ._tones import write_tone_corpus
from .test_resume_without_init import MODEL, QUIET, Killed, killed_during, write_init

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tones")
    write_tone_corpus(root, "train", 8, seed=0)
    return root


def config(tones: Path, init: Path, out: Path) -> FinetuneConfig:
    return FinetuneConfig(train=[str(tones / "xx" / "train.jsonl")], init=str(init), out=str(out), max_updates=4,
                          save_every=2, freeze_updates=2, max_tokens=64000, **QUIET)


def killed_at_update_3(cfg: FinetuneConfig, monkeypatch) -> None:
    """`finetune(cfg)` killed during its third update: its folder holds the checkpoint of update 2."""
    with monkeypatch.context() as m:
        m.setattr(FinetuneTask, "train_step", killed_during(3, FinetuneTask))
        with pytest.raises(Killed):
            finetune(cfg)


def test_a_resumed_run_fills_a_cache_that_the_next_seed_reads(tones, tmp_path, monkeypatch):
    init = write_init("xlsr pretraining", tmp_path / "init")
    killed_at_update_3(config(tones, init, tmp_path / "seed1"), monkeypatch)
    caches = {}
    finetune(config(tones, init, tmp_path / "seed1"), feature_caches=caches)  # resumed from update 2
    assert caches["train"].entries
    hits = caches["train"].hits
    finetune(config(tones, init, tmp_path / "seed2"), feature_caches=caches)  # fresh, from --init's weights
    assert caches["train"].hits > hits


def test_a_cache_filled_by_a_fresh_run_serves_a_resumed_one(tones, tmp_path, monkeypatch):
    init = write_init("xlsr pretraining", tmp_path / "init")
    killed_at_update_3(config(tones, init, tmp_path / "seed2"), monkeypatch)
    caches = {}
    finetune(config(tones, init, tmp_path / "seed1"), feature_caches=caches)
    hits = caches["train"].hits
    finetune(config(tones, init, tmp_path / "seed2"), feature_caches=caches)  # resumed from update 2
    assert caches["train"].hits > hits


def test_a_resumed_run_refuses_a_cache_of_another_cnn(tones, tmp_path, monkeypatch):
    init = write_init("xlsr pretraining", tmp_path / "init")
    # another --init whose CNN is the random one a resumed run of seed 1 is built with, before its weights load:
    # the cache must be checked against the CNN the run trains with, not that one
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other", Wav2Vec2ForPreTraining(Wav2Vec2Config(**MODEL)))
    killed_at_update_3(config(tones, init, tmp_path / "run"), monkeypatch)
    caches = {}
    finetune(config(tones, other, tmp_path / "other-run"), feature_caches=caches)
    with pytest.raises(XlsrError, match="feature cache: it holds the output of another CNN"):
        finetune(config(tones, init, tmp_path / "run"), feature_caches=caches)
