"""A Hugging Face classification model (ForSequenceClassification, ForAudioFrameClassification, ForXVector): refused
in one line naming its architecture, not by listing its head's keys; as a training run's --init its encoder is taken,
computing what transformers' encoder computes, and the head left out, said."""

from __future__ import annotations

import logging

import pytest
import torch
from hf_fixtures import make_hf

from xlsr.errors import CheckpointError
from xlsr.interop.init_model import load_encoder, load_init
from xlsr.interop.load import load_pretrained
from xlsr.model import Wav2Vec2ForCTC, Wav2Vec2Model

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSIFIERS = [("Wav2Vec2ForSequenceClassification", {}),
               ("Wav2Vec2ForSequenceClassification", {"use_weighted_layer_sum": True}),  # as SUPERB's are saved
               ("Wav2Vec2ForAudioFrameClassification", {}),
               ("Wav2Vec2ForXVector", {})]  # its head has a feature_extractor of its own beside the encoder's


def _saved(path, cls_name: str, overrides: dict):
    model = make_hf(cls_name, "base_like", seed=3, **overrides)
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("cls_name, overrides", CLASSIFIERS)
def test_a_classification_model_is_refused_by_its_architecture(tmp_path, cls_name, overrides):
    _saved(tmp_path / "hf", cls_name, overrides)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "hf")
    assert str(err.value) == (
        f"{tmp_path / 'hf' / 'config.json'}: architectures names {cls_name}, a classification model; xlsr reads "
        f"wav2vec2 pretraining, encoder and CTC models (Wav2Vec2ForPreTraining, Wav2Vec2Model, Wav2Vec2ForCTC); its "
        f"encoder can be taken as the --init of xlsr finetune or pretrain")


@pytest.mark.parametrize("cls_name, overrides", CLASSIFIERS)
def test_as_init_its_encoder_is_taken_and_the_head_left_out(tmp_path, caplog, cls_name, overrides):
    hf = _saved(tmp_path / "hf", cls_name, overrides)
    with caplog.at_level(logging.WARNING, logger="xlsr.interop.huggingface"):
        init = load_init(str(tmp_path / "hf"), "tiny")
    head = sorted({k.split(".")[0] for k in hf.state_dict() if not k.startswith("wav2vec2.")})
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'hf' / 'config.json'}: a {cls_name}: its encoder is taken, its classification head "
        f"({', '.join(head)}) left out"]
    assert type(init.model) is Wav2Vec2Model and init.vocab_tokens is None and init.source_format == "hf"
    x = torch.randn(2, 1600, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf.wav2vec2(x).last_hidden_state
        assert ref.abs().mean() > 0.1  # a real signal, not a collapsed output
        torch.testing.assert_close(init.model.eval()(x).last_hidden_state, ref, atol=1e-4, rtol=0)
    run_model = Wav2Vec2ForCTC(init.config, 5)  # as `xlsr finetune` builds its model from --init
    load_encoder(run_model.wav2vec2, init)
    for key, value in init.model.state_dict().items():
        assert torch.equal(run_model.wav2vec2.state_dict()[key], value), key
