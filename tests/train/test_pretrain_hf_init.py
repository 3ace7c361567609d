"""Continuing pretraining from a Hugging Face folder: the architecture is the folder's, the training settings are
the preset's (config.json holds transformers' fine-tuning ones), and the run says which changed."""

import pytest
import torch

from xlsr.model import Wav2Vec2Config
from xlsr.train.pretrain import PretrainConfig, PretrainTask

from ._audio import make_corpus

transformers = pytest.importorskip("transformers")


def test_a_hugging_face_init_pretrains_with_the_presets_training_settings(tmp_path, capsys):
    hf = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, conv_dim=(32,) * 7,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, codevector_dim=32,
        proj_codevector_dim=32, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        mask_time_prob=0.075, layerdrop=0.1, hidden_dropout=0.1, attention_dropout=0.1, feat_proj_dropout=0.1)
    torch.manual_seed(0)
    transformers.Wav2Vec2ForPreTraining(hf).save_pretrained(tmp_path / "hf")
    data = make_corpus(tmp_path / "tones", per_lang=2)
    task = PretrainTask(PretrainConfig(data=str(data), out=str(tmp_path / "run"), preset="large", init=str(tmp_path / "hf"),
                                       model={"layerdrop": 0.02}, num_workers=0, progress=False, tensorboard=False,
                                       device="cpu", max_tokens=64000, min_sample_size=8000, max_sample_size=16000))
    large, got = Wav2Vec2Config.preset("large"), task.model_cfg
    assert (got.hidden_size, got.num_layers) == (32, 2)  # the folder's architecture
    assert (got.mask_prob, got.dropout, got.attention_dropout, got.latent_temp) == (
        large.mask_prob, large.dropout, large.attention_dropout, large.latent_temp)  # 0.65, 0.0, 0.0, τ_min 0.1
    assert got.layerdrop == 0.02  # --model.* wins over both
    note = capsys.readouterr().err
    assert "is a Hugging Face model" in note and "mask_prob 0.075 -> 0.65" in note and "layerdrop" not in note
