"""The presets carry the published hyperparameters, field by field, and the codebook-size limit sits at 2^63.

Sources: fairseq's examples/wav2vec/config/pretraining/wav2vec2_base_librispeech.yaml (Base) and
wav2vec2_large_librivox.yaml (the XLSR family), fairseq's Wav2Vec2Config defaults for the fields those files
leave out (mask_prob 0.65, mask_length 10, num_negatives 100, logit_temp 0.1, latent_vars 320, latent_groups 2,
conv_pos 128, conv_pos_groups 16), and the Hugging Face configs of facebook/wav2vec2-xls-r-1b and -2b.
A parameter count does not see these: a layerdrop rate, a mask probability or a 768-wide contrastive space in a
1920-wide model all build a model of about the right size.
"""

import pytest

from xlsr.errors import XlsrError
from xlsr.model import PRESETS, Wav2Vec2Config

# fairseq defaults every preset keeps (none of the pretraining yamls overrides them)
OBJECTIVE = dict(mask_prob=0.65, mask_length=10, min_masks=2, num_negatives=100, cross_sample_negatives=0,
                 logit_temp=0.1, num_codevector_groups=2, num_codevectors_per_group=320, conv_pos=128,
                 conv_pos_groups=16, diversity_weight=0.1)

BASE = dict(hidden_size=768, num_layers=12, num_heads=12, ffn_dim=3072, layerdrop=0.05, dropout=0.1,
            attention_dropout=0.1, dropout_input=0.1, dropout_features=0.1, feature_grad_mult=0.1, final_dim=256,
            codevector_dim=256, latent_temp=(2.0, 0.5, 0.999995), feature_penalty_weight=10.0,
            extractor_mode="group_norm", conv_bias=False, layer_norm_first=False, normalize_waveform=False)
LARGE = dict(hidden_size=1024, num_layers=24, num_heads=16, ffn_dim=4096, layerdrop=0.0, dropout=0.0,
             attention_dropout=0.0, dropout_input=0.0, dropout_features=0.0, feature_grad_mult=1.0, final_dim=768,
             codevector_dim=768, latent_temp=(2.0, 0.1, 0.999995), feature_penalty_weight=0.0,
             extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True, normalize_waveform=True)
EXPECTED = {
    "base": BASE,
    "large": LARGE,
    "xlsr-53": LARGE,
    "xls-r-300m": LARGE,
    "xls-r-1b": dict(LARGE, hidden_size=1280, num_layers=48, num_heads=16, ffn_dim=5120, final_dim=1024,
                     codevector_dim=1024),
    "xls-r-2b": dict(LARGE, hidden_size=1920, num_layers=48, num_heads=16, ffn_dim=7680, final_dim=1024,
                     codevector_dim=1024),
    # the project's CPU preset (docs/pretrain_recipe.md's runs were made with it): the XLSR layout at width 256
    "tiny": dict(LARGE, hidden_size=256, num_layers=4, num_heads=4, ffn_dim=1024, final_dim=256, codevector_dim=256,
                 dropout=0.1, attention_dropout=0.1, dropout_input=0.1, dropout_features=0.1,
                 latent_temp=(2.0, 0.5, 0.999995)),
}


def test_every_preset_is_checked_here():
    assert set(EXPECTED) == set(PRESETS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_preset_fields_are_the_published_values(name):
    cfg = Wav2Vec2Config.preset(name)
    expected = {**OBJECTIVE, **EXPECTED[name]}
    got = {key: getattr(cfg, key) for key in expected}
    assert got == expected
    channels = 256 if name == "tiny" else 512
    assert cfg.conv_layers == [(channels, 10, 5)] + [(channels, 3, 2)] * 4 + [(channels, 2, 2)] * 2
    assert (cfg.receptive_field, cfg.total_stride, cfg.conv_dim) == (400, 320, channels)


def test_codebook_of_exactly_2_to_the_63_codewords_is_refused():
    # V^G = 2^63 ids do not fit an int64 (its largest value is 2^63 - 1); 2^62 do. Within the G x V limit (the
    # pair once pinned here, V = 2^31 with G = 2, is now refused by it: 2^32 codevectors built at once).
    with pytest.raises(XlsrError, match=r"num_codevector_groups=63: .*2\^63"):
        Wav2Vec2Config(num_codevector_groups=63, num_codevectors_per_group=2, codevector_dim=252)
    with pytest.raises(XlsrError, match=r"num_codevector_groups=21: .*2\^63"):
        Wav2Vec2Config(num_codevector_groups=21, num_codevectors_per_group=8, codevector_dim=252)
    assert Wav2Vec2Config(num_codevector_groups=62, num_codevectors_per_group=2, codevector_dim=248)
    assert Wav2Vec2Config(num_codevector_groups=20, num_codevectors_per_group=8, codevector_dim=260)


@pytest.mark.parametrize("groups, per_group", [(2, 2**31), (2, 32769), (1, 65537), (64, 1025)])
def test_a_codebook_above_the_limit_is_refused_before_anything_is_built(groups, per_group):
    # G x V codevectors are built at once (the codebook and weight_proj's rows): 2 x 2^31 of them would take minutes
    # or all memory. XLSR-53, XLS-R and MMS have 2 x 320.
    with pytest.raises(XlsrError) as e:
        Wav2Vec2Config(num_codevector_groups=groups, num_codevectors_per_group=per_group, codevector_dim=256)
    assert str(e.value) == (f"Wav2Vec2Config.num_codevectors_per_group={per_group}: with "
                            f"Wav2Vec2Config.num_codevector_groups={groups} the codebook holds G x V = "
                            f"{groups * per_group} codevectors, above the limit 65536, which no published "
                            f"model comes near (XLSR-53, XLS-R, MMS: 2 x 320)")


@pytest.mark.parametrize("groups, per_group", [(2, 32768), (1, 65536), (4, 16384), (2, 320)])
def test_a_codebook_at_the_limit_is_accepted(groups, per_group):
    cfg = Wav2Vec2Config(num_codevector_groups=groups, num_codevectors_per_group=per_group, codevector_dim=256)
    assert (cfg.num_codevector_groups, cfg.num_codevectors_per_group) == (groups, per_group)
