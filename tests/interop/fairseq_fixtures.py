"""fairseq-format checkpoints built offline from tiny transformers models (fairseq itself is not installed).

The state dicts follow reference/checkpoints.md §7.1/§7.3, written independently of the code under test.
The configs come in each era's form: a flat argparse Namespace (2020), an omegaconf 2.0 DictConfig with
fairseq's structured dataclasses and enums (Dec 2020 to 2021), or a plain dict (later). For the DictConfig
form, real omegaconf objects are built and pickled; the fairseq classes they name are importable
stand-ins registered under fairseq's module names for the duration of a test.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import sys
import types
from typing import Any, Optional, Tuple  # noqa: UP035 (omegaconf 2.0 understands typing's generics only)

import pytest
import torch
from hf_fixtures import HF_CONFIGS

# HF → fairseq names, written from reference/checkpoints.md §7.1/§7.3 (independent of the code under test).
HF_TO_FAIRSEQ = [
    (r"wav2vec2\.feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"wav2vec2\.feature_projection\.layer_norm\.", "layer_norm."),
    (r"wav2vec2\.feature_projection\.projection\.", "post_extract_proj."),
    (r"wav2vec2\.masked_spec_embed", "mask_emb"),
    (r"wav2vec2\.encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"wav2vec2\.encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"wav2vec2\.encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"wav2vec2\.encoder\.layer_norm\.", "encoder.layer_norm."),
    (r"wav2vec2\.encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"wav2vec2\.encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"wav2vec2\.encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"wav2vec2\.encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"wav2vec2\.encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
    (r"quantizer\.codevectors", "quantizer.vars"),
    (r"project_hid\.", "final_proj."),
]


def fairseq_state(hf_model, config_name: str, finetuned: bool) -> dict[str, torch.Tensor]:
    """The state dict fairseq would hold for this transformers model (one of HF_CONFIGS), tensors copied."""
    return {k: v.clone() for k, v in fairseq_state_from_hf(hf_model.state_dict(), HF_CONFIGS[config_name],
                                                           finetuned).items()}


def fairseq_state_from_hf(hf_state: dict[str, torch.Tensor], hf_config: dict,
                          finetuned: bool) -> dict[str, torch.Tensor]:
    """An HF wav2vec2 state dict under fairseq's names (the same tensors); `hf_config` as HF's config.json."""
    layer_mode = hf_config["feat_extract_norm"] == "layer"
    out = {}
    for key, value in hf_state.items():
        new = key
        m = re.fullmatch(r"wav2vec2\.feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", key)
        if m:  # GroupNorm sits at index 2; LayerNorm inside Sequential(TransposeLast, LN, TransposeLast)
            new = f"feature_extractor.conv_layers.{m[1]}.2{'.1' if layer_mode else ''}.{m[2]}"
        else:
            for pattern, repl in HF_TO_FAIRSEQ:
                new = re.sub("^" + pattern, repl, new)
        if finetuned:
            new = "w2v_encoder.proj." + new[len("lm_head."):] if new.startswith("lm_head.") else (
                "w2v_encoder.w2v_model." + new)
        out[new] = value
    mask_emb = ("w2v_encoder.w2v_model." if finetuned else "") + "mask_emb"
    if mask_emb not in out:  # fairseq always has it; transformers omits it when no masking is configured
        out[mask_emb] = torch.rand(hf_config["hidden_size"])
    return out


def fairseq_model_cfg(config_name: str) -> dict:
    """cfg["model"] in fairseq's names for one of HF_CONFIGS."""
    return fairseq_model_cfg_from_hf(HF_CONFIGS[config_name])


def fairseq_model_cfg_from_hf(c: dict) -> dict:
    """cfg["model"] in fairseq's names for an HF wav2vec2 config (HF_CONFIGS' entries or a config.json)."""
    spec = " + ".join(f"[({d}, {k}, {s})]" for d, k, s in zip(c["conv_dim"], c["conv_kernel"], c["conv_stride"]))
    return {
        "_name": "wav2vec2",
        "extractor_mode": "layer_norm" if c["feat_extract_norm"] == "layer" else "default",
        "conv_feature_layers": spec,
        "conv_bias": c["conv_bias"],
        "encoder_layers": c["num_hidden_layers"],
        "encoder_embed_dim": c["hidden_size"],
        "encoder_ffn_embed_dim": c["intermediate_size"],
        "encoder_attention_heads": c["num_attention_heads"],
        "activation_fn": "gelu",
        "layer_norm_first": c["do_stable_layer_norm"],
        "conv_pos": c["num_conv_pos_embeddings"],
        "conv_pos_groups": c["num_conv_pos_embedding_groups"],
        "final_dim": c["proj_codevector_dim"],
        "latent_dim": c["codevector_dim"],
        "latent_groups": c["num_codevector_groups"],
        "latent_vars": c["num_codevectors_per_group"],
        "latent_temp": [2.0, 0.1, 0.999995],
        "quantize_targets": True,
        "dropout": 0.0, "attention_dropout": 0.0, "encoder_layerdrop": 0.0, "feature_grad_mult": 0.1,
        "mask_prob": 0.65, "mask_length": 10,
    }  # fmt: skip


class Wrap:
    """Something with a state_dict(), for fairseq_state() on a hand-made state."""

    def __init__(self, state):
        self._state = state

    def state_dict(self):
        return self._state


def write_dictionary(path, symbols) -> None:
    """A fairseq dict file: one '<symbol> <count>' per line, most frequent first."""
    path.write_text("".join(f"{s} {1000 - i}\n" for i, s in enumerate(symbols)))


# ---------------------------------------------------------------------------- omegaconf 2.0 configs
def omegaconf_2_0():
    """The omegaconf module, or skip: the DictConfig fixtures need omegaconf 2.0.x (fairseq pinned <2.1)."""
    omegaconf = pytest.importorskip("omegaconf")
    if not omegaconf.__version__.startswith("2.0."):
        pytest.skip(f"needs omegaconf 2.0.x as fairseq used (found {omegaconf.__version__})")
    return omegaconf


class StrEnum(enum.Enum):
    """fairseq.dataclass.constants.StrEnum: the base of fairseq's ChoiceEnum fields."""

    def __str__(self):
        return self.value


# fairseq's ChoiceEnum(["default", "layer_norm"]) for extractor_mode; pickled as a member of this class.
Choices = StrEnum("Choices", {"default": "default", "layer_norm": "layer_norm"})

_FAIRSEQ_MODULES = ("fairseq", "fairseq.dataclass", "fairseq.dataclass.constants", "fairseq.models",
                    "fairseq.models.wav2vec", "fairseq.models.wav2vec.wav2vec2",
                    "fairseq.models.wav2vec.wav2vec2_asr", "fairseq.tasks", "fairseq.tasks.audio_pretraining")  # fmt: skip


@pytest.fixture
def fake_fairseq(monkeypatch):
    """Register importable stand-in fairseq modules, so that objects naming fairseq classes can be pickled."""
    modules = {name: types.ModuleType(name) for name in _FAIRSEQ_MODULES}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    constants = modules["fairseq.dataclass.constants"]
    for cls in (StrEnum, Choices):
        monkeypatch.setattr(cls, "__module__", constants.__name__)
        setattr(constants, cls.__name__, cls)
    return modules


def _annotation(name: str, value):
    if name == "extractor_mode":
        return Choices
    if isinstance(value, (list, tuple)):
        return Tuple[(float,) * len(value)]  # noqa: UP006 latent_temp: Tuple[float, float, float] in fairseq
    if value is None or isinstance(value, str) and value.startswith("${"):
        return Optional[str] if value is None else Any  # noqa: UP045
    return type(value) if isinstance(value, (bool, int, float, str)) else Any


def structured(module, class_name: str, values: dict):
    """An omegaconf DictConfig backed by a dataclass named like fairseq's, with `values` as its defaults."""
    from omegaconf import OmegaConf

    fields = []
    for name, value in values.items():
        if name == "extractor_mode":
            value = Choices[value]
        default = dataclasses.field(default_factory=lambda v=value: v) if isinstance(value, (list, dict)) else value
        fields.append((name, _annotation(name, values[name]), default))
    cls = dataclasses.make_dataclass(class_name, fields)
    cls.__module__ = module.__name__
    setattr(module, class_name, cls)
    cfg = OmegaConf.structured(cls)
    for name, value in values.items():
        if not isinstance(value, (list, tuple, dict)) and value is not None and not str(value).startswith("${"):
            assert cfg[name] == (Choices[value] if name == "extractor_mode" else value)
    return cfg


def pretraining_dictconfig(modules, config_name: str, *, normalize: bool):
    """A pretraining run's cfg as fairseq pickled it in Dec 2020: groups in a DictConfig, model structured."""
    from omegaconf import OmegaConf

    model = structured(modules["fairseq.models.wav2vec.wav2vec2"], "Wav2Vec2Config", fairseq_model_cfg(config_name))
    task = structured(modules["fairseq.tasks.audio_pretraining"], "AudioPretrainingConfig",
                      {"_name": "audio_pretraining", "data": "/data/manifests", "normalize": normalize,
                       "sample_rate": 16000, "labels": None})  # fmt: skip
    return OmegaConf.create({"common": {"seed": 1, "fp16": True}, "model": model, "task": task,
                             "criterion": {"_name": "wav2vec", "loss_weights": [0.1, 10.0], "infonce": True}})


def finetuned_dictconfig(modules, config_name: str, *, normalize: bool, labels: str = "ltr"):
    """An early-2021 fine-tuned run's cfg: model.w2v_args holds the pretraining cfg; `normalize` is a reference."""
    from omegaconf import II, OmegaConf

    values = {"_name": "wav2vec_ctc", "w2v_path": "/models/xlsr_53_56k.pt", "final_dropout": 0.1,
              "mask_prob": 0.75, "mask_channel_prob": 0.25, "mask_channel_length": 64, "layerdrop": 0.1,
              "normalize": "${task.normalize}", "data": "${task.data}", "w2v_args": None}  # fmt: skip
    model = structured(modules["fairseq.models.wav2vec.wav2vec2_asr"], "Wav2Vec2CtcConfig", values)
    model.normalize = II("task.normalize")
    model.w2v_args = pretraining_dictconfig(modules, config_name, normalize=normalize)
    task = structured(modules["fairseq.tasks.audio_pretraining"], "AudioFinetuningConfig",
                      {"_name": "audio_finetuning", "data": "/data/ft", "normalize": normalize, "labels": labels})
    return OmegaConf.create({"common": {"seed": 1}, "model": model, "task": task,
                             "criterion": {"_name": "ctc", "zero_infinity": True}})
