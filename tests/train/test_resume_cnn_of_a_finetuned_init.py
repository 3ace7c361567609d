"""A fine-tuning run started before xlsr trained the CNN of a fine-tuned --init (feature_grad_mult 0 recorded) with
--freeze-feature-encoder false: its checkpoint records 0, the CNN it started with left frozen. It resumes as it
started (what trains acts only when a run starts), said; a run started since resumes at the scale it took."""

import json
import logging

import pytest
import yaml

from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune

from ._tones import write_tone_corpus
from .test_finetune import QUIET
from .test_finetune_cnn_of_a_finetuned_init import finetuned_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def finetuned_init(tmp_path):
    return finetuned_checkpoint(tmp_path / "ft")


def _cfg(tmp_path, init, max_updates, **model):
    train = tmp_path / "xx" / "train.jsonl"
    if not train.is_file():
        write_tone_corpus(tmp_path, "train", 4, seed=1)
    return FinetuneConfig(train=[str(train)], out=str(tmp_path / "run"), init=str(init), new_head=True, freeze_feature_encoder=False,
                          freeze_updates=0, max_updates=max_updates, max_tokens=160_000, valid_every=0, seed=1,
                          model={"mask_prob": 0.0, "layerdrop": 0.0, **model}, **QUIET)


def test_a_run_started_before_the_cnn_trained_resumes_as_it_started(finetuned_init, tmp_path, caplog):
    run = finetune(_cfg(tmp_path, finetuned_init, 1, feature_grad_mult=0.5))
    # as the earlier version left it: model.feature_grad_mult not given, the checkpoint's 0 (the --init's, kept)
    config_yaml = run / "config.yaml"
    record = yaml.safe_load(config_yaml.read_text())
    del record["model"]["feature_grad_mult"]
    config_yaml.write_text(yaml.safe_dump(record))
    checkpoint = (run / "checkpoints" / "last").resolve() / "config.json"
    saved = json.loads(checkpoint.read_text())
    saved["model"]["feature_grad_mult"] = 0.0
    checkpoint.write_text(json.dumps(saved))
    cfg = _cfg(tmp_path, finetuned_init, 2)
    with caplog.at_level(logging.WARNING, logger="xlsr"):
        assert FinetuneTask(cfg).model_config.feature_grad_mult == 0.0
    assert "was started with feature_grad_mult 0" in caplog.text and "gradient scale 1.0" not in caplog.text
    finetune(cfg)  # the old code: "holds a run with another model (model.feature_grad_mult: 0.0 there, 1.0 now)"
    assert (run / "checkpoints" / "last").resolve().name == "update_0000002"


def test_a_run_started_since_resumes_at_the_scale_it_took(finetuned_init, tmp_path):
    run = finetune(_cfg(tmp_path, finetuned_init, 1))
    cfg = _cfg(tmp_path, finetuned_init, 2)
    assert FinetuneTask(cfg).model_config.feature_grad_mult == 1.0
    finetune(cfg)
    assert (run / "checkpoints" / "last").resolve().name == "update_0000002"
