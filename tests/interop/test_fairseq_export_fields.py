"""export_fairseq, field by field and row by row: every setting fairseq's config holds comes back from the file as
it was (each in its own fairseq name), and every row of a CTC head lands on its own fairseq dictionary index."""

from __future__ import annotations

import pytest
import torch

from xlsr.interop.fairseq import load_fairseq
from xlsr.interop.fairseq_export import export_fairseq
from xlsr.interop.native import build_model
from xlsr.model import Wav2Vec2Config

# A value unlike its default and unlike the others for every field the fairseq config carries.
DISTINCT = dict(dropout=0.11, attention_dropout=0.12, activation_dropout=0.13, dropout_input=0.14,
                dropout_features=0.15, layerdrop=0.16, final_dropout=0.17, feature_grad_mult=0.18, logit_temp=0.19,
                mask_prob=0.21, mask_length=3, mask_channel_prob=0.22, mask_channel_length=7, num_negatives=9,
                cross_sample_negatives=2, latent_temp=(1.5, 0.3, 0.9995), diversity_weight=0.23,
                feature_penalty_weight=4.5, layer_norm_first=True, conv_bias=True, normalize_waveform=True)  # fmt: skip
CARRIED = {"Wav2Vec2ForPreTraining": sorted(set(DISTINCT) - {"final_dropout"}),
           "Wav2Vec2ForCTC": sorted(set(DISTINCT) - {"diversity_weight", "feature_penalty_weight"})}


def small_config(**overrides) -> Wav2Vec2Config:
    fields = dict(conv_layers=[(32, 10, 5), (32, 3, 2)], hidden_size=48, num_layers=2, num_heads=4, ffn_dim=96,
                  conv_pos=8, conv_pos_groups=4, final_dim=24, codevector_dim=20, num_codevectors_per_group=10,
                  num_codevector_groups=2)  # fmt: skip
    return Wav2Vec2Config(**{**fields, **overrides})


@pytest.mark.parametrize("architecture", sorted(CARRIED))
def test_every_setting_fairseq_holds_comes_back_as_it_was(tmp_path, architecture):
    cfg = small_config(**DISTINCT)
    ctc = architecture == "Wav2Vec2ForCTC"
    model = build_model(architecture, cfg, 5 if ctc else None).eval()
    vocab = ["<blank>", "<unk>", "a", "b", "c"] if ctc else None
    back = load_fairseq(export_fairseq(model, tmp_path / "fs", vocab=vocab) / "checkpoint.pt").config
    for name in CARRIED[architecture]:
        assert getattr(back, name) == pytest.approx(getattr(cfg, name)), name


def test_the_pretraining_config_uses_fairseqs_own_names(tmp_path):
    cfg = small_config(**DISTINCT)
    folder = export_fairseq(build_model("Wav2Vec2ForPreTraining", cfg).eval(), tmp_path / "fs")
    saved = torch.load(folder / "checkpoint.pt", weights_only=True)["cfg"]
    model = saved["model"]
    assert (model["encoder_layerdrop"], model["mask_channel_length"], model["dropout_features"]) == (0.16, 7, 0.15)
    assert (model["latent_dim"], model["final_dim"]) == (20, 24)
    assert saved["criterion"]["loss_weights"] == [0.23, 4.5]  # fairseq's order: diversity, then feature penalty


def test_a_head_carrying_fairseqs_pad_and_eos_rows_puts_each_back_on_its_own_index(tmp_path):
    # As a model imported from fairseq holds them: <blank>, <unk>, then <pad>, </s>, then the symbols.
    tokens = ["<blank>", "<unk>", "<pad>", "</s>", "a", "b"]
    model = build_model("Wav2Vec2ForCTC", small_config(), len(tokens)).eval()
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.arange(len(tokens), dtype=torch.float32)[:, None].expand_as(model.lm_head.weight))
        model.lm_head.bias.copy_(torch.arange(len(tokens), dtype=torch.float32) * 10)
    folder = export_fairseq(model, tmp_path / "fs", vocab=tokens, kind="chars")
    head = torch.load(folder / "checkpoint.pt", weights_only=True)["model"]["w2v_encoder.proj.bias"]
    # fairseq's Dictionary: <s> (the blank) 0, <pad> 1, </s> 2, <unk> 3, then dict.ltr.txt's symbols
    assert head.tolist() == [0.0, 20.0, 30.0, 10.0, 40.0, 50.0]
    assert (folder / "dict.ltr.txt").read_text() == "a 1\nb 1\n"
    back = load_fairseq(folder / "checkpoint.pt")
    assert back.vocab == tokens and torch.equal(back.model.lm_head.bias, model.lm_head.bias)
