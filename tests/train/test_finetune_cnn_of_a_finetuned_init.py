"""A fine-tuned --init records feature_grad_mult 0 (its CNN was frozen; fairseq's fine-tuned files all do): a run
that asks to train the CNN (--freeze-feature-encoder false) trains it, and says the scale it took."""

import logging

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.interop.native import load_checkpoint, save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune

from ._tones import write_tone_corpus
from .test_finetune import QUIET, SMALL

pytestmark = pytest.mark.usefixtures("one_thread")


def finetuned_checkpoint(path):
    """A CTC checkpoint as a fine-tuning run with a frozen CNN leaves it: feature_grad_mult 0 in its config."""
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL, "feature_grad_mult": 0.0})
    tokens = ["<blank>", "<unk>", "|", "a", "b", "c"]
    torch.manual_seed(0)
    return save_checkpoint(path, Wav2Vec2ForCTC(cfg, len(tokens)), vocab=tokens)


@pytest.fixture
def finetuned_init(tmp_path):
    return finetuned_checkpoint(tmp_path / "ft")


def test_a_cnn_asked_to_train_trains_from_an_init_that_froze_it(finetuned_init, tmp_path, caplog):
    train = write_tone_corpus(tmp_path, "train", 8, seed=1)
    cfg = FinetuneConfig(train=[str(train)], out=str(tmp_path / "run"), init=str(finetuned_init), new_head=True,
                         freeze_feature_encoder=False, freeze_updates=0, max_updates=3, lr=1e-2,
                         lr_schedule="constant", warmup_updates=0, max_tokens=160_000, valid_every=0, seed=1,
                         model={"mask_prob": 0.0, "layerdrop": 0.0}, **QUIET)
    with caplog.at_level(logging.WARNING, logger="xlsr"):
        assert FinetuneTask(cfg).model_config.feature_grad_mult == 1.0
    assert "records feature_grad_mult 0" in caplog.text and "gradient scale 1.0" in caplog.text
    run = finetune(cfg)
    start = load_checkpoint(finetuned_init).model.state_dict()
    trained = load_checkpoint(run / "checkpoints" / "last").model.state_dict()
    convs = [k for k in start if ".feature_encoder." in k and k.endswith("weight")]
    assert convs and all(not torch.equal(trained[k], start[k]) for k in convs)  # the old code: equal, scaled by 0


def test_a_scale_given_is_taken_and_zero_with_a_cnn_to_train_is_refused(finetuned_init, tmp_path):
    kw = dict(train=["t.jsonl"], out=str(tmp_path / "r"), init=str(finetuned_init), freeze_feature_encoder=False)
    with pytest.raises(XlsrError, match="model.feature_grad_mult 0: it freezes the CNN, which "
                                        "freeze_feature_encoder false asks to train"):
        FinetuneConfig(model={"feature_grad_mult": 0.0}, **kw)
    FinetuneConfig(model={"feature_grad_mult": 0.0}, **{**kw, "freeze_feature_encoder": True})  # what freezing sets
