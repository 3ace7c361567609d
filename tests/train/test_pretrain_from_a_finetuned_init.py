"""Pretraining from a fine-tuned --init (a CTC model: no quantizer) takes the preset's training settings, as from a
Hugging Face folder: the checkpoint's are those it was fine-tuned with (feature_grad_mult 0 froze its CNN, fine-tuning's
masks and LayerDrop), which would leave the CNN frozen in pretraining, unsaid."""

import logging

import pytest
import torch

from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC
from xlsr.train.pretrain import PretrainTask

from .test_pretrain_resume_ctc_init import MODEL, command

pytestmark = pytest.mark.usefixtures("one_thread")

FINE_TUNING = {"feature_grad_mult": 0.0, "mask_prob": 0.75, "layerdrop": 0.1}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from ._audio import make_corpus

    home = tmp_path_factory.mktemp("home")
    torch.manual_seed(0)
    save_checkpoint(home / "fine-tuned", Wav2Vec2ForCTC(Wav2Vec2Config(**{**MODEL, **FINE_TUNING}), vocab_size=6),
                    vocab=["<pad>", "<s>", "</s>", "<unk>", "a", "b"])
    make_corpus(home / "audio", per_lang=2, splits=("train",))
    return home


def test_the_presets_settings_replace_the_fine_tuning_ones_and_are_said(home, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="xlsr"):
        task = PretrainTask(command(home, tmp_path / "run", "fine-tuned"))
    preset = Wav2Vec2Config.preset("tiny")
    assert [getattr(task.model_cfg, k) for k in FINE_TUNING] == [getattr(preset, k) for k in FINE_TUNING]
    assert task.model_cfg.feature_grad_mult > 0  # the old code: 0, the CNN frozen through pretraining
    assert "is a model without a quantizer (a CTC model or an encoder)" in caplog.text and "feature_grad_mult 0.0 -> " in caplog.text


def test_a_setting_given_wins_over_both(home, tmp_path):
    task = PretrainTask(command(home, tmp_path / "run", "fine-tuned", "--model.mask_prob", "0.3"))
    assert task.model_cfg.mask_prob == 0.3


def test_a_run_started_before_the_presets_settings_resumes_with_the_inits(home, tmp_path):
    """A run an earlier xlsr started from this --init kept its fine-tuning settings: its resume keeps them (the
    preset's would make its own checkpoint read as another model's); a run started since resumes with the preset's."""
    from .test_pretrain_resume_ctc_init import started

    old, new = tmp_path / "old", tmp_path / "new"
    fresh = PretrainTask(command(home, new, "fine-tuned"))
    as_before = Wav2Vec2Config(**{**MODEL, **FINE_TUNING})  # the --init's own settings, as it records them
    started(old, as_before)
    started(new, fresh.model_cfg)
    assert PretrainTask(command(home, old, "fine-tuned")).model_cfg == as_before
    assert PretrainTask(command(home, new, "fine-tuned")).model_cfg == fresh.model_cfg
