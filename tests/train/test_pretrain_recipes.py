"""The shipped GPU pretraining recipes resolve to fairseq's published wav2vec 2.0 settings (spec section 2.5)."""

import pytest

from xlsr.config import load_config
from xlsr.train.pretrain import PretrainConfig, resolve_model_config
from xlsr.train.recipes import recipe_path

# examples/wav2vec/config/pretraining/wav2vec2_{base_librispeech,large_librivox}.yaml
FAIRSEQ = {
    "wav2vec2-base": dict(
        max_updates=400_000, lr=5e-4, warmup_updates=32_000, batch=64 * 1_400_000, max_sample_size=250_000,
        max_utterances=None,  # no dataset.batch_size
        model=dict(extractor_mode="group_norm", conv_bias=False, layer_norm_first=False, hidden_size=768,
                   num_layers=12, ffn_dim=3072, num_heads=12, final_dim=256, latent_temp=(2.0, 0.5, 0.999995),
                   layerdrop=0.05, dropout_input=0.1, dropout_features=0.1, dropout=0.1, attention_dropout=0.1,
                   feature_grad_mult=0.1, diversity_weight=0.1, feature_penalty_weight=10.0,
                   normalize_waveform=False)),
    "wav2vec2-large-lv60": dict(
        max_updates=1_000_000, lr=5e-3, warmup_updates=32_000, batch=128 * 1_200_000, max_sample_size=320_000,
        max_utterances=4,  # dataset.batch_size: 4
        model=dict(extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True, hidden_size=1024,
                   num_layers=24, ffn_dim=4096, num_heads=16, final_dim=768, latent_temp=(2.0, 0.1, 0.999995),
                   layerdrop=0.0, dropout_input=0.0, dropout_features=0.0, dropout=0.0, attention_dropout=0.0,
                   feature_grad_mult=1.0, diversity_weight=0.1, feature_penalty_weight=0.0,
                   normalize_waveform=True)),
}


@pytest.mark.parametrize("name", sorted(FAIRSEQ))
def test_gpu_pretraining_recipe_is_fairseqs(name):
    want = FAIRSEQ[name]
    cfg = load_config(PretrainConfig, [recipe_path(name)], {"recipe": name})
    assert (cfg.max_updates, cfg.lr, cfg.lr_schedule, cfg.warmup_updates, cfg.end_lr, cfg.lr_power) == \
        (want["max_updates"], want["lr"], "polynomial", want["warmup_updates"], 0.0, 1.0)
    assert cfg.max_tokens * cfg.update_freq == want["batch"]  # the effective batch, in one process
    assert (cfg.max_sample_size, cfg.min_sample_size) == (want["max_sample_size"], 32_000)
    assert cfg.max_utterances == want["max_utterances"]
    assert (tuple(cfg.adam_betas), cfg.adam_eps, cfg.weight_decay, cfg.clip_norm) == ((0.9, 0.98), 1e-6, 0.01, 0.0)
    model = resolve_model_config(cfg)
    for key, value in want["model"].items():
        assert getattr(model, key) == value, key
    assert (model.num_codevector_groups, model.num_codevectors_per_group, model.num_negatives, model.logit_temp,
            model.mask_prob, model.mask_length, model.conv_pos, model.conv_pos_groups) == (2, 320, 100, 0.1, 0.65, 10,
                                                                                           128, 16)
