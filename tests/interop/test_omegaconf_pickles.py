"""Protocol-2 pickles of omegaconf 2.0 configs (xlsr_53_56k.pt, early-2021 fine-tuned files) load as plain data.

The fixtures pickle real omegaconf 2.0.x DictConfigs at test time, at protocol 2 as torch.save does,
so the Python 2 spellings (`__builtin__.long` in a ListConfig's key type) are in the file.
"""

from __future__ import annotations

import functools
import pickle
import pickletools
import re
import sys
import zipfile

import pytest
import torch
from fairseq_fixtures import (
    fairseq_model_cfg,
    fairseq_state,
    fake_fairseq,  # noqa: F401 (a fixture)
    finetuned_dictconfig,
    omegaconf_2_0,
    pretraining_dictconfig,
    write_dictionary,
)
from hf_fixtures import make_hf, padded_batch

from xlsr.errors import CheckpointError
from xlsr.interop import safe_pickle
from xlsr.interop.fairseq import read_fairseq_checkpoint
from xlsr.interop.load import load_pretrained


def _globals_in_pickle(path) -> set[str]:
    """The globals the data.pkl of a torch zip checkpoint names, as written (module name)."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert data[:2] == b"\x80\x02"  # protocol 2
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def test_xlsr_53_style_dictconfig_loads_and_matches(tmp_path, fake_fairseq):  # noqa: F811
    omegaconf_2_0()
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=30)
    cfg = pretraining_dictconfig(fake_fairseq, "xlsr_like", normalize=True)
    path = tmp_path / "xlsr_53_56k.pt"
    torch.save({"args": None, "cfg": cfg, "model": fairseq_state(hf, "xlsr_like", finetuned=False),
                "optimizer_history": [{"num_updates": 5}]}, path)  # fmt: skip
    written = _globals_in_pickle(path)
    assert {"__builtin__ long", "omegaconf.dictconfig DictConfig", "omegaconf.listconfig ListConfig",
            "omegaconf.nodes EnumNode", "fairseq.dataclass.constants Choices"} <= written  # fmt: skip

    plain = read_fairseq_checkpoint(path)["cfg"]
    assert plain["model"]["extractor_mode"] == "layer_norm" and plain["model"]["latent_temp"] == [2.0, 0.1, 0.999995]
    assert plain["model"]["encoder_layers"] == 2 and plain["model"]["_name"] == "wav2vec2"
    assert plain["task"] == {"_name": "audio_pretraining", "data": "/data/manifests", "normalize": True,
                             "sample_rate": 16000, "labels": None}  # fmt: skip
    assert plain["criterion"]["loss_weights"] == [0.1, 10.0]

    loaded = load_pretrained(path)
    assert type(loaded.model).__name__ == "Wav2Vec2ForPreTraining"
    assert loaded.config.extractor_mode == "layer_norm" and loaded.config.normalize_waveform is True
    assert loaded.config.feature_penalty_weight == 10.0
    x, _, _ = padded_batch(seed=30)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.wav2vec2(x).last_hidden_state, hf.wav2vec2(x).last_hidden_state,
                                   atol=1e-4, rtol=0)


@pytest.mark.parametrize("normalize", [False, True])
def test_finetuned_dictconfig_resolves_references(tmp_path, fake_fairseq, normalize):  # noqa: F811
    omegaconf_2_0()
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=31)
    cfg = finetuned_dictconfig(fake_fairseq, "base_like", normalize=normalize)
    path = tmp_path / "wav2vec2_vox_960h_new.pt"
    torch.save({"args": None, "cfg": cfg, "model": fairseq_state(hf, "base_like", finetuned=True)}, path)
    write_dictionary(tmp_path / "dict.ltr.txt", list("|etaoin"))

    plain = read_fairseq_checkpoint(path)["cfg"]
    # model.normalize was "${task.normalize}" in the file; model.data "${task.data}".
    assert plain["model"]["normalize"] is normalize and plain["model"]["data"] == "/data/ft"
    assert plain["model"]["w2v_args"]["model"]["encoder_embed_dim"] == 48

    loaded = load_pretrained(path)
    assert loaded.config.normalize_waveform is normalize
    assert loaded.config.mask_prob == 0.75 and loaded.config.mask_channel_length == 64
    assert loaded.vocab[:2] == ["<blank>", "<unk>"] and loaded.vocab[4:] == list("|etaoin")
    x, lengths, attention_mask = padded_batch(seed=31)
    with torch.no_grad():
        ref = hf(x).logits  # group norm: transformers feeds no attention mask
        out = loaded.model(x).logits
    torch.testing.assert_close(out, ref[..., [0, 3, 1, 2] + list(range(4, 11))], atol=1e-4, rtol=0)


def test_interpolations_resolve_nearest_scope_first():
    cfg = {"task": {"normalize": False, "data": "/ft"},
           "model": {"normalize": "${task.normalize}", "chained": "${model.normalize}", "env": "${env:HOME}",
                     "missing": "${task.nothing}", "partial": "a ${task.data}",
                     "w2v_args": {"task": {"normalize": True}, "model": {"normalize": "${task.normalize}"}}}}  # fmt: skip
    got = safe_pickle.resolve_interpolations(cfg)["model"]
    assert got["normalize"] is False and got["chained"] is False
    assert got["w2v_args"]["model"]["normalize"] is True  # its own pretraining task, not the fine-tuning one
    assert got["env"] == "${env:HOME}" and got["missing"] == "${task.nothing}" and got["partial"] == "a ${task.data}"


class _Reduce:
    """Pickles as a call of `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_python2_spellings_map_to_python3_builtins_only():
    data = {"long": 2**70, "types": [int, str, range, set, type(None)], "r": range(3), "s": {1, 2}}
    raw = pickle.dumps(data, protocol=2)
    written = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert {"__builtin__ long", "__builtin__ unicode", "__builtin__ xrange", "__builtin__ set",
            "__builtin__ type"} <= written  # fmt: skip
    assert safe_pickle.loads(raw) == data


@pytest.mark.parametrize("func, args, spelled", [
    (functools.reduce, (print, [1, 2]), "__builtin__.reduce"),  # functools.reduce in Python 3
    (sys.intern, ("x",), "__builtin__.intern"),
    (eval, ("1",), "__builtin__.eval"),
    (getattr, (int, "mro"), "__builtin__.getattr"),
])  # fmt: skip
def test_other_python2_spellings_are_still_refused(func, args, spelled):
    raw = pickle.dumps(_Reduce(func, *args), protocol=2)
    assert spelled.replace(".", " ").encode() in raw.replace(b"\n", b" ")
    with pytest.raises(safe_pickle.UnsafePickleError, match="refused to load " + re.escape(spelled) + ":"):
        safe_pickle.loads(raw)


def test_type_builds_nothing_but_none_type():
    raw = pickle.dumps(_Reduce(type, "Evil", (object,), {"x": 1}), protocol=2)
    with pytest.raises(safe_pickle.UnsafePickleError, match="refused builtins.type"):
        safe_pickle.loads(raw)


def test_unresolvable_field_is_one_line_error(tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "base_like", seed=32)
    model_cfg = {**fairseq_model_cfg("base_like"), "encoder_layers": "${common.layers}"}
    path = tmp_path / "odd.pt"
    torch.save({"cfg": {"model": model_cfg, "task": {}}, "model": fairseq_state(hf, "base_like", False)}, path)
    with pytest.raises(CheckpointError, match=r"odd\.pt: encoder_layers='\$\{common\.layers\}' is not an integer$"):
        load_pretrained(path)
