import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.model import PRESETS, Wav2Vec2Config, Wav2Vec2ForPreTraining

ROOT = Path(__file__).resolve().parents[2]


def _benchmark_module():
    if str(ROOT / "benchmarks") not in sys.path:  # the benchmark imports its sibling timing.py, as when run as a script
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("pretrain_step", ROOT / "benchmarks" / "pretrain_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_json_round_trip(tmp_path):
    for name in PRESETS:
        cfg = Wav2Vec2Config.preset(name)
        cfg.to_json(tmp_path / f"{name}.json")
        assert Wav2Vec2Config.from_json(tmp_path / f"{name}.json") == cfg
        assert Wav2Vec2Config.from_dict(cfg.to_dict()) == cfg


def test_preset_layouts():
    tiny = Wav2Vec2Config.preset("tiny")
    assert (tiny.hidden_size, tiny.num_layers, tiny.num_heads, tiny.ffn_dim) == (256, 4, 4, 1024)
    assert tiny.extractor_mode == "layer_norm" and tiny.layer_norm_first and tiny.normalize_waveform
    assert tiny.receptive_field == 400 and tiny.total_stride == 320
    base = Wav2Vec2Config.preset("base")
    assert base.extractor_mode == "group_norm" and not base.conv_bias and not base.layer_norm_first
    assert base.feature_grad_mult == 0.1 and base.feature_penalty_weight == 10.0
    xlsr = Wav2Vec2Config.preset("xlsr-53")
    assert xlsr.final_dim == 768 and xlsr.latent_temp == (2.0, 0.1, 0.999995)
    assert Wav2Vec2Config.preset("xls-r-2b").codevector_dim == 1024


def test_unknown_preset_and_keys(tmp_path):
    with pytest.raises(XlsrError, match="allowed: tiny, base"):
        Wav2Vec2Config.preset("huge")
    with pytest.raises(XlsrError, match="hiden_size"):
        Wav2Vec2Config.from_dict({"hiden_size": 12})
    with pytest.raises(XlsrError, match="extractor_mode"):
        Wav2Vec2Config(extractor_mode="batch_norm")
    with pytest.raises(XlsrError, match="num_heads"):
        Wav2Vec2Config(hidden_size=100, num_heads=12)
    for decay in (1.5, 0.0):  # above 1 the temperature grows each update (overflowing at update ~2000)
        with pytest.raises(XlsrError, match=r"latent_temp=.*decay per update \(third value\) must be in \(0, 1\]"):
            Wav2Vec2Config(latent_temp=(2.0, 0.5, decay))
    assert Wav2Vec2Config(latent_temp=(0.5, 0.5, 1.0)).latent_temp == (0.5, 0.5, 1.0)  # a constant temperature
    # a codeword is one int64 id: G = 9 groups of V = 256 would wrap (9 * 8 bits), and distractors that differ
    # from their positive only in the first group were dropped as identical
    with pytest.raises(XlsrError, match=r"num_codevector_groups=9: .*2\^63"):
        Wav2Vec2Config(num_codevector_groups=9, num_codevectors_per_group=256, codevector_dim=252)
    assert Wav2Vec2Config(num_codevector_groups=7, num_codevectors_per_group=256, codevector_dim=252)  # 2^56 codewords
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(XlsrError, match="bad.json"):
        Wav2Vec2Config.from_json(tmp_path / "bad.json")


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_count_matches_transformers(name):
    """Ours vs transformers' Wav2Vec2ForPreTraining at the equivalent config, both built on the meta device."""
    pytest.importorskip("transformers")
    from transformers import Wav2Vec2ForPreTraining as HFPreTraining

    cfg = Wav2Vec2Config.preset(name)
    with torch.device("meta"):
        ours = sum(p.numel() for p in Wav2Vec2ForPreTraining(cfg).parameters())
        ref = sum(p.numel() for p in HFPreTraining(_benchmark_module().hf_config(cfg)).parameters())
    assert abs(ours - ref) / ref < 0.01
    expected = {"tiny": 5e6, "base": 95e6, "large": 317e6, "xlsr-53": 317e6, "xls-r-300m": 317e6}
    if name in expected:
        assert abs(ours - expected[name]) / expected[name] < 0.05
