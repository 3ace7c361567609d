"""Config files whose values are absurd (sizes no model has, wrong types, NaN/Infinity) are refused in one line
naming the file and the field, before any model is built; published sizes still load."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from xlsr.errors import CheckpointError
from xlsr.interop.huggingface import export_hf
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

VOCAB = ["<blank>", "<unk>", "a", "b", "c"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("absurd")
    cfg = Wav2Vec2Config(conv_layers=[(8, 10, 5), (8, 3, 2)], hidden_size=16, num_layers=1, num_heads=2, ffn_dim=32,
                         final_dim=8, codevector_dim=8, num_codevectors_per_group=4, conv_pos=4, conv_pos_groups=2)
    model = Wav2Vec2ForCTC(cfg, len(VOCAB))
    save_checkpoint(root / "xlsr", model, vocab=VOCAB)
    export_hf(model, root / "hf", vocab=VOCAB)
    return root


def _edited(folders, tmp_path, kind, field, value):
    d = tmp_path / kind
    shutil.copytree(folders / kind, d)
    cfg = json.loads((d / "config.json").read_text())
    if kind == "xlsr":
        cfg["model"][field] = value
    else:
        cfg.pop("xlsr_config")  # the HF keys alone, as transformers writes them
        cfg[field] = value
    (d / "config.json").write_text(json.dumps(cfg))  # NaN and Infinity as Python's json writes (and reads) them
    return d


NATIVE = [
    ("hidden_size", 10**9, "above the limit"), ("num_layers", 10**6, "above the limit"),
    ("ffn_dim", 0, "positive"), ("num_heads", 5, "must divide"), ("codevector_dim", 0, "positive"),
    ("dropout", 2.0, "[0, 1]"), ("dropout", "0.1", "must be a number, not str"),
    ("hidden_size", "16", "whole number, not str"), ("hidden_size", 16.0, "whole number, not float"),
    ("hidden_size", float("nan"), "whole number"), ("hidden_size", float("inf"), "whole number"),
    ("hidden_size", [16], "whole number, not list"), ("num_heads", True, "whole number, not bool"),
    ("layer_norm_first", 1, "true or false"), ("conv_bias", "false", "true or false"),
    ("layer_norm_eps", "1e-5", "a number"), ("latent_temp", ["2", 0.5, 0.9], "list of numbers"),
    ("conv_layers", [[8, 10.5, 5], [8, 3, 2]], "whole numbers"), ("conv_layers", [[8, 0, 5], [8, 3, 2]], "positive"),
    ("conv_layers", [[10**9, 10, 5], [8, 3, 2]], "above the limit"), ("final_dim", 10**9, "above the limit"),
    ("num_negatives", 10**12, "above the limit"),
    ("num_codevectors_per_group", 2**31, "with Wav2Vec2Config.num_codevector_groups=2 the codebook holds G x V = "
                                         "4294967296 codevectors, above the limit"),
]


@pytest.mark.parametrize("field,value,why", NATIVE, ids=[f"{f}={v!r}"[:30] for f, v, _ in NATIVE])
def test_native_config_value_refused_in_one_line(folders, tmp_path, field, value, why, monkeypatch):
    msg = _refused_before_building(folders, tmp_path, "xlsr", field, value, monkeypatch)
    assert f"Wav2Vec2Config.{field}" in msg and why in msg


def _refused_before_building(folders, tmp_path, fmt, field, value, monkeypatch) -> str:
    """The one-line refusal of a folder whose config.json sets `field` to `value`, naming its config.json; no model
    is built first."""
    d = _edited(folders, tmp_path, fmt, field, value)
    import xlsr.interop.native as native
    monkeypatch.setattr(native, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(CheckpointError) as e:
        load_pretrained(d)
    msg = str(e.value)
    assert msg.startswith(f"{d / 'config.json'}: ") and "\n" not in msg
    return msg


HF = [
    ("hidden_size", 10**9, "hidden_size=1000000000: above the limit"),
    ("num_hidden_layers", 10**6, "num_hidden_layers=1000000: above the limit"),
    ("intermediate_size", -1, "intermediate_size=-1: must be a positive"),
    ("num_attention_heads", 5, "num_attention_heads=5: must divide"),
    ("conv_kernel", [10], "lengths are 2, 1, 2"), ("conv_stride", [5, 0], "positive"),
    ("conv_dim", 8, "conv_dim=8 must be a list"),
    ("hidden_dropout", "0.1", "hidden_dropout='0.1': must be a number"),
    ("hidden_size", 16.7, "hidden_size=16.7: must be a whole number"),  # was read as 16
    ("hidden_size", float("inf"), "hidden_size=inf: must be a whole number"),  # was an OverflowError
    ("num_attention_heads", True, "num_attention_heads=True: must be a whole number, not bool"),
    ("do_stable_layer_norm", "false", "do_stable_layer_norm='false': must be true or false"),  # was read as True
    ("apply_spec_augment", "false", "apply_spec_augment='false' must be true or false"),
    ("mask_time_prob", float("nan"), "mask_time_prob=nan: must be in [0, 1]"),
    ("num_codevectors_per_group", 2**31, "num_codevectors_per_group=2147483648: with num_codevector_groups=2 the "
                                         "codebook holds G x V = 4294967296 codevectors, above the limit 65536"),
    ("num_codevector_groups", 40000, "num_codevector_groups=40000: above the limit 64"),
]


@pytest.mark.parametrize("field,value,why", HF, ids=[f"{f}={v!r}"[:30] for f, v, _ in HF])
def test_hf_config_value_refused_in_hf_words(folders, tmp_path, field, value, why, monkeypatch):
    assert why in _refused_before_building(folders, tmp_path, "hf", field, value, monkeypatch)


FAIRSEQ = [
    ("latent_vars", 2**31, "config does not build a model (latent_vars=2147483648: with latent_groups=2 the codebook "
                           "holds G x V = 4294967296 codevectors, above the limit 65536"),
    ("latent_groups", 40000, "config does not build a model (latent_groups=40000: above the limit 64"),
    ("encoder_layers", 10**6, "config does not build a model (encoder_layers=1000000: above the limit 1024"),
    ("encoder_layers", float("inf"), "encoder_layers=inf is not an integer"),  # was an OverflowError
    ("encoder_layers", float("nan"), "encoder_layers=nan is not an integer"),
    ("encoder_layers", 12.7, "encoder_layers=12.7 is not an integer"),  # was read as 12
    ("latent_dim", float("inf"), "latent_dim=inf is not an integer"),  # was an OverflowError
    ("pos_conv_depth", float("inf"), "pos_conv_depth=inf is not an integer"),  # was an OverflowError
    ("dropout", 10**400, "dropout=1000000000"),  # was an OverflowError (an int past float's range)
    ("conv_feature_layers", "[(512, 1e999, 5)]", "conv_feature_layers='[(512, 1e999, 5)]': not a list of (dim, "
                                                 "kernel, stride) whole numbers"),  # was an OverflowError
    ("conv_feature_layers", [[512, 10.5, 5]], "conv_feature_layers=[[512, 10.5, 5]]: not a list"),  # was read as 10
]


@pytest.mark.parametrize("field,value,why", FAIRSEQ, ids=[f"{f}={v!r}"[:30] for f, v, _ in FAIRSEQ])
def test_fairseq_config_value_refused_in_fairseq_words(tmp_path, field, value, why, monkeypatch):
    import xlsr.interop.fairseq as fairseq
    monkeypatch.setattr(fairseq, "model_with_weights", lambda *a, **k: pytest.fail("a model was built"))
    path = tmp_path / "absurd.pt"
    torch.save({"cfg": {"model": {"_name": "wav2vec2", field: value}, "task": {}},
                "model": {"quantizer.vars": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError) as e:
        load_pretrained(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and why in msg


def test_huge_model_refused_before_anything_is_built(folders, tmp_path, monkeypatch):
    # HF with no masking configured would draw torch.rand(hidden_size) for the mask embedding: 4 GB at 10**9
    d = _edited(folders, tmp_path, "hf", "hidden_size", 10**9)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(mask_time_prob=0.0, mask_feature_prob=0.0, num_hidden_layers=10**6)
    (d / "config.json").write_text(json.dumps(cfg))
    import xlsr.interop.native as native
    monkeypatch.setattr(native, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(CheckpointError, match="above the limit"):
        load_pretrained(d)


@pytest.mark.parametrize("name", ["xls-r-2b", "xls-r-1b", "xls-r-300m", "base"])
def test_published_sizes_pass_the_limits(name):
    cfg = Wav2Vec2Config.preset(name)
    assert Wav2Vec2Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    mms_1b = dict(cfg.to_dict(), hidden_size=1280, num_layers=48, ffn_dim=5120, num_heads=16, adapter_attn_dim=16)
    assert Wav2Vec2Config.from_dict(mms_1b).ffn_dim == 5120


def test_safetensors_header_claiming_more_than_the_file_is_refused(folders, tmp_path):
    d = tmp_path / "xlsr"
    shutil.copytree(folders / "xlsr", d)
    weights = d / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])  # the header's offsets now run past the end
    with pytest.raises(CheckpointError) as e:
        load_pretrained(d)
    assert str(e.value).startswith(f"{weights}: ") and "\n" not in str(e.value)
