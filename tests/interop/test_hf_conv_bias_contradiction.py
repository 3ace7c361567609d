"""A config.json whose conv_bias contradicts its weights is one line naming the file and the field (the weights would
otherwise fail as unexpected or missing keys under our names, saying neither)."""

from __future__ import annotations

import json

import pytest
from hf_fixtures import make_hf

from xlsr.errors import CheckpointError
from xlsr.interop.load import load_pretrained


def _with_config(tmp_path, config_name: str, **changes) -> str:
    make_hf("Wav2Vec2ForPreTraining", config_name).save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
    return str(path)


def test_conv_bias_false_with_biases_in_the_weights(tmp_path):
    path = _with_config(tmp_path, "xlsr_like", conv_bias=False)  # the weights have conv biases
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(tmp_path / "hf")
    assert str(exc.value) == (f"{path}: conv_bias=false disagrees with the weights in model.safetensors, "
                              "which hold conv biases")


def test_conv_bias_true_without_biases_in_the_weights(tmp_path):
    path = _with_config(tmp_path, "base_like", conv_bias=True)  # the weights have none
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(tmp_path / "hf")
    assert str(exc.value) == (f"{path}: conv_bias=true disagrees with the weights in model.safetensors, "
                              "which hold no conv biases")


def test_an_absent_conv_bias_is_transformers_default_and_said_so(tmp_path):
    path = _with_config(tmp_path, "xlsr_like", conv_bias=None)  # key removed: transformers reads false
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(tmp_path / "hf")
    assert str(exc.value) == (f"{path}: conv_bias=false (absent: transformers' default) disagrees with the weights "
                              "in model.safetensors, which hold conv biases")
