"""Hugging Face directories at their edges: a config.json without pad_token_id has transformers' default (0) as the
blank, so the head and vocabulary come in unchanged; weights without the mask embedding their config says they
have are refused, not made up."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from xlsr.errors import CheckpointError
from xlsr.interop.huggingface import export_hf, import_hf
from xlsr.interop.native import build_model
from xlsr.model import Wav2Vec2Config


def _small_config(**overrides) -> Wav2Vec2Config:
    fields = dict(conv_layers=[(32, 10, 5), (32, 3, 2)], hidden_size=48, num_layers=1, num_heads=4, ffn_dim=96,
                  conv_pos=8, conv_pos_groups=4, final_dim=24, codevector_dim=20, num_codevectors_per_group=10)
    return Wav2Vec2Config(**{**fields, **overrides})


def test_a_config_without_pad_token_id_has_its_blank_at_id_0(tmp_path):
    cfg = _small_config()
    tokens = ["<blank>", "<unk>", "a", "b", "c"]
    model = build_model("Wav2Vec2ForCTC", cfg, len(tokens)).eval()
    with torch.no_grad():
        model.lm_head.bias.copy_(torch.arange(len(tokens), dtype=torch.float32))
    folder = export_hf(model, tmp_path / "hf", vocab=tokens)
    config = json.loads((folder / "config.json").read_text())
    assert config.pop("pad_token_id") == 0
    (folder / "config.json").write_text(json.dumps(config))
    loaded = import_hf(folder)
    assert loaded.vocab == tokens and "head_rows_from" not in loaded.metadata
    assert loaded.model.lm_head.bias.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_weights_without_the_mask_embedding_their_config_has_are_refused(tmp_path):
    model = build_model("Wav2Vec2ForCTC", _small_config(mask_prob=0.5), 5).eval()
    folder = export_hf(model, tmp_path / "hf", vocab=["<blank>", "<unk>", "a", "b", "c"])
    state = load_file(folder / "model.safetensors")
    del state["wav2vec2.masked_spec_embed"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing keys: wav2vec2\.masked_spec_embed$"):
        import_hf(folder)


def test_an_unk_token_that_is_the_pad_token_keeps_the_blank_and_adds_a_never_predicted_unk(tmp_path):
    # transformers encodes unknown text as the pad id then; the blank row must stay the blank, not be renamed <unk>
    tokens = ["<blank>", "a", "b", "c"]
    model = build_model("Wav2Vec2ForCTC", _small_config(), len(tokens)).eval()
    with torch.no_grad():
        model.lm_head.bias.copy_(torch.arange(len(tokens), dtype=torch.float32))
    folder = export_hf(model, tmp_path / "hf", vocab=tokens)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        data = json.loads((folder / name).read_text())
        data["unk_token"] = "<pad>"
        (folder / name).write_text(json.dumps(data))
    loaded = import_hf(folder)
    assert loaded.vocab == ["<blank>", "<unk>", "a", "b", "c"] and loaded.metadata["added_rows"] == ["<unk>"]
    bias = loaded.model.lm_head.bias.tolist()
    assert bias[0] == 0.0 and bias[2:] == [1.0, 2.0, 3.0] and bias[1] < -1e3
