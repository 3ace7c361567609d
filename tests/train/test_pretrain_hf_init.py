"""Continuing pretraining from a Hugging Face folder: the architecture is the folder's, the training settings are
the preset's (config.json holds transformers' fine-tuning ones), and the run says which changed."""

import pytest
import torch

from xlsr.cli.log_lines import show_library_log
from xlsr.model import Wav2Vec2Config
from xlsr.train.pretrain import PretrainConfig, PretrainTask

from ._audio import make_corpus

transformers = pytest.importorskip("transformers")


def test_a_hugging_face_init_pretrains_with_the_presets_training_settings(tmp_path, capsys):
    show_library_log()  # as the command shows it
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
    assert "xlsr: warning: " in note and "is a Hugging Face model" in note and "mask_prob 0.075 -> 0.65" in note and "layerdrop" not in note


def test_presets_are_matched_by_layer_kinds_and_sizes():
    from xlsr.interop.init_model import presets_shaped_like

    assert {"large", "xlsr-53", "xls-r-300m"} <= set(presets_shaped_like(Wav2Vec2Config.preset("xls-r-300m")))
    assert presets_shaped_like(Wav2Vec2Config.preset("tiny")) == ["tiny"]
    assert presets_shaped_like(Wav2Vec2Config(hidden_size=96, num_heads=4)) == []


def test_without_preset_the_settings_come_from_the_preset_the_checkpoint_is_shaped_like(tmp_path, capsys, monkeypatch):
    import xlsr.train.pretrain as pretrain

    show_library_log()

    torch.manual_seed(0)
    transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, conv_dim=(32,) * 7,
        feat_extract_norm="layer", do_stable_layer_norm=True, codevector_dim=32, proj_codevector_dim=32,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(tmp_path / "hf")
    data = make_corpus(tmp_path / "tones", per_lang=2)

    def task():
        return PretrainTask(PretrainConfig(data=str(data), out=str(tmp_path / "run"), init=str(tmp_path / "hf"),
                                           num_workers=0, progress=False, tensorboard=False, device="cpu",
                                           max_tokens=64000, min_sample_size=8000, max_sample_size=16000))

    # sizes no preset has: the default preset's settings, and the note says --preset chooses
    assert task().model_cfg.latent_temp == Wav2Vec2Config.preset("tiny").latent_temp
    assert "match no preset; --preset chooses" in capsys.readouterr().err
    # shaped like the large family (stood in for here: a real one is 300M parameters): large's settings, not tiny's
    monkeypatch.setattr(pretrain, "presets_shaped_like", lambda config: ["large", "xls-r-300m"])
    got = task().model_cfg
    assert (got.dropout, got.latent_temp) == (0.0, Wav2Vec2Config.preset("large").latent_temp)
    assert "takes the `large` preset's instead:" in capsys.readouterr().err
