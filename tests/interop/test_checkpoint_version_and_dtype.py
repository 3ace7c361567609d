"""Loading refuses a checkpoint of another format version, and an fp16 checkpoint becomes a float32 model."""

from __future__ import annotations

import json

import pytest
import torch

from xlsr.errors import CheckpointError
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint
from xlsr.interop.state_dict import build_with_weights
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

CFG = dict(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2, ffn_dim=32,
           conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8, num_codevectors_per_group=5)  # fmt: skip


def test_a_checkpoint_of_another_version_is_refused_naming_it(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", Wav2Vec2ForCTC(Wav2Vec2Config(**CFG), 4), vocab=["<blank>", "<unk>", "a", "b"])
    cfg_path = tmp_path / "ckpt" / "config.json"
    data = json.loads(cfg_path.read_text())
    load_pretrained(tmp_path / "ckpt")  # as written: loads
    cfg_path.write_text(json.dumps({**data, "version": data["version"] + 1}))
    with pytest.raises(CheckpointError, match=r"config.json: unsupported checkpoint version 2"):
        load_pretrained(tmp_path / "ckpt")


def test_half_precision_weights_become_the_models_float32_weights():
    torch.manual_seed(0)
    ref = Wav2Vec2ForCTC(Wav2Vec2Config(**CFG), 4)
    half = {k: v.half() for k, v in ref.state_dict().items()}
    model = build_with_weights(lambda: Wav2Vec2ForCTC(Wav2Vec2Config(**CFG), 4), half, "fp16.safetensors")
    for k, v in model.state_dict().items():
        assert v.dtype == ref.state_dict()[k].dtype, k
        assert torch.equal(v, half[k].to(v.dtype)), k
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 800)).logits
    assert logits.dtype == torch.float32
