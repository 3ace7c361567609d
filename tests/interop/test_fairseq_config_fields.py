"""fairseq config → Wav2Vec2Config, field by field: each fairseq name reaches its own field, an absent one takes
fairseq's own default (fairseq/models/wav2vec/wav2vec2.py, Wav2Vec2Config), and a fine-tuning run's settings
override the pretraining ones, a 0 included."""

from __future__ import annotations

import pytest

from xlsr.interop.fairseq import config_from_fairseq

# fairseq name → (our field, a value unlike its default and unlike every other value here)
_INTS = {"encoder_layers": ("num_layers", 3), "encoder_attention_heads": ("num_heads", 5),
         "encoder_ffn_embed_dim": ("ffn_dim", 96), "conv_pos": ("conv_pos", 17), "conv_pos_groups": ("conv_pos_groups", 4),
         "latent_groups": ("num_codevector_groups", 6), "latent_vars": ("num_codevectors_per_group", 21),
         "num_negatives": ("num_negatives", 33), "cross_sample_negatives": ("cross_sample_negatives", 7),
         "mask_length": ("mask_length", 13), "mask_channel_length": ("mask_channel_length", 64)}  # fmt: skip
_FLOATS = {"feature_grad_mult": ("feature_grad_mult", 0.11), "dropout": ("dropout", 0.12),
           "attention_dropout": ("attention_dropout", 0.13), "activation_dropout": ("activation_dropout", 0.14),
           "dropout_input": ("dropout_input", 0.15), "dropout_features": ("dropout_features", 0.16),
           "encoder_layerdrop": ("layerdrop", 0.17), "logit_temp": ("logit_temp", 0.18), "mask_prob": ("mask_prob", 0.19),
           "mask_channel_prob": ("mask_channel_prob", 0.21)}  # fmt: skip


def _ckpt(model: dict, task: dict | None = None) -> dict:
    return {"cfg": {"model": {"_name": "wav2vec2", **model}, "task": task or {}}}


def test_each_fairseq_field_reaches_its_own_field():
    model = {k: v for k, (_, v) in {**_INTS, **_FLOATS}.items()}
    model.update(encoder_embed_dim=40, final_dim=24, latent_dim=30, layer_norm_first=True, conv_bias=True)
    cfg = config_from_fairseq(_ckpt(model))
    for theirs, (ours, value) in {**_INTS, **_FLOATS}.items():
        assert getattr(cfg, ours) == value, theirs
    assert (cfg.hidden_size, cfg.final_dim, cfg.codevector_dim) == (40, 24, 30)
    assert cfg.layer_norm_first is True and cfg.conv_bias is True


def test_fields_a_fairseq_config_leaves_out_take_fairseqs_defaults():
    cfg = config_from_fairseq(_ckpt({}))
    assert cfg.layer_norm_first is False and cfg.conv_bias is False and cfg.extractor_mode == "group_norm"
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.ffn_dim) == (768, 12, 12, 3072)
    assert (cfg.conv_pos, cfg.conv_pos_groups) == (128, 16)
    assert (cfg.num_codevector_groups, cfg.num_codevectors_per_group) == (2, 320)
    assert (cfg.num_negatives, cfg.cross_sample_negatives) == (100, 0)
    assert (cfg.mask_prob, cfg.mask_length, cfg.mask_channel_prob, cfg.mask_channel_length) == (0.65, 10, 0.0, 10)
    assert (cfg.dropout, cfg.attention_dropout, cfg.activation_dropout, cfg.layerdrop) == (0.1, 0.1, 0.0, 0.0)
    assert cfg.logit_temp == 0.1 and cfg.feature_grad_mult == 1.0 and cfg.latent_temp == (2.0, 0.5, 0.999995)
    # final_dim 0 means D; latent_dim 0 means final_dim (fairseq: vq_dim = latent_dim if latent_dim > 0 else final_dim)
    assert cfg.final_dim == 768 and cfg.codevector_dim == 768
    assert config_from_fairseq(_ckpt({"final_dim": 256})).codevector_dim == 256
    assert cfg.normalize_waveform is False


def test_a_fine_tuning_runs_settings_override_the_pretraining_ones_a_zero_included():
    pretraining = {"_name": "wav2vec2", "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.1,
                   "encoder_layerdrop": 0.05, "mask_prob": 0.65, "mask_channel_prob": 0.2, "feature_grad_mult": 0.1}
    finetuning = {"_name": "wav2vec_ctc", "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
                  "layerdrop": 0.0, "mask_prob": 0.5, "mask_channel_prob": 0.0, "feature_grad_mult": 0.0,
                  "final_dropout": 0.0, "normalize": False,
                  "w2v_args": {"model": pretraining, "task": {"normalize": False}}}
    cfg = config_from_fairseq({"cfg": {"model": finetuning, "task": {"labels": "ltr"}}})
    assert (cfg.dropout, cfg.attention_dropout, cfg.activation_dropout, cfg.layerdrop) == (0.0, 0.0, 0.0, 0.0)
    assert (cfg.mask_prob, cfg.mask_channel_prob, cfg.feature_grad_mult, cfg.final_dropout) == (0.5, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("weights, diversity, penalty", [([0.1, 10.0], 0.1, 10.0), ([0.2], 0.2, 0.2),
                                                          ("[0.1, 5]", 0.1, 5.0)])
def test_loss_weights_are_diversity_then_feature_penalty(weights, diversity, penalty):
    cfg = config_from_fairseq(_ckpt({}), {"loss_weights": weights})
    assert (cfg.diversity_weight, cfg.feature_penalty_weight) == (diversity, penalty)
