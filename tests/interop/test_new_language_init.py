"""init_language, MMS's recipe for a new language: adapters start as fairseq initialises them (LayerNorm scale 1 and
shift 0, Linear biases 0, weights N(0, 0.02)), the head is new with the language's rows, and only they train."""

from __future__ import annotations

import torch

from xlsr.interop.adapters import adapter_parameters, init_language
from xlsr.interop.native import build_model
from xlsr.model import Wav2Vec2Config


def test_a_new_languages_adapters_and_head_start_as_mms_starts_them():
    cfg = Wav2Vec2Config(conv_layers=[(32, 10, 5), (32, 3, 2)], hidden_size=48, num_layers=2, num_heads=4, ffn_dim=96,
                         conv_pos=8, conv_pos_groups=4, final_dim=24, codevector_dim=20, num_codevectors_per_group=10,
                         layer_norm_first=True, adapter_attn_dim=16)  # fmt: skip
    model = build_model("Wav2Vec2ForCTC", cfg, 5)
    base = {k: v.clone() for k, v in model.state_dict().items() if ".adapter." not in k and not k.startswith("lm_head.")}
    init_language(model, 9, generator=torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    adapters = {k: p for k, p in params.items() if ".adapter." in k}
    assert adapters and model.lm_head.weight.shape == (9, 48) and model.vocab_size == 9
    for name, p in adapters.items():
        if ".norm.weight" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            assert 0.01 < p.std().item() < 0.03 and abs(p.mean().item()) < 0.01, name
    assert not model.lm_head.bias.any() and 0.01 < model.lm_head.weight.std().item() < 0.03
    trainable = {k for k, p in params.items() if p.requires_grad}
    assert trainable == {k for k in params if ".adapter." in k or k.startswith("lm_head.")}
    assert {id(p) for p in adapter_parameters(model)} == {id(params[k]) for k in trainable}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base.items())  # the base is untouched
