"""Hugging Face wav2vec2 config.json <-> our Wav2Vec2Config, field by field in both directions.

Options transformers has and our model lacks are refused by name (`_UNSUPPORTED`); our whole config also
travels under "xlsr_config", so a directory we wrote reads back exactly. transformers applies config.json's
SpecAugment keys (mask_time_*, mask_feature_*) whenever it trains the model, fine-tuning included: a model without a
CTC head is written with transformers' fine-tuning values there, as the hub's pretrained configs hold them, and its
own pretraining masking is read back from "xlsr_config" (`hf_masking`, `keeps_xlsr_record`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlsr.errors import CheckpointError
from xlsr.model import Wav2Vec2Config
from xlsr.model.config import in_file_words

_EXTRACTOR_MODES = {"group": "group_norm", "layer": "layer_norm"}  # feat_extract_norm → our extractor_mode
# transformers' CTC loss settings (its defaults) against ours, which are fixed: mean over the batch, zero_infinity.
_HF_CTC_LOSS_DEFAULTS = {"ctc_loss_reduction": "sum", "ctc_zero_infinity": False}
_XLSR_CTC_LOSS = {"ctc_loss_reduction": "mean", "ctc_zero_infinity": True}
_UNSUPPORTED = {  # HF field: the only value we can represent
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "add_adapter": False,
    "use_weighted_layer_sum": False,
}


def config_from_hf(hf: dict, source: str | Path, *, architecture: str = "", normalize: bool | None = None):
    """Our Wav2Vec2Config from an HF config.json dict (our own fields, if stored there, fill the rest)."""
    _check_hf_supported(hf, source)
    base = {} if hf.get("xlsr_config") is None else hf["xlsr_config"]
    if not isinstance(base, dict):
        raise CheckpointError(f"{source}: xlsr_config={_clip(base)}, expected an object (xlsr's model config)")
    fields = _fields_from_hf(hf, source)
    if keeps_xlsr_record(hf, architecture):
        for ours in _MASK_KEYS:  # the export wrote transformers' values there; ours are the record's
            del fields[ours]
    spec_augment = hf.get("apply_spec_augment", True)
    if not isinstance(spec_augment, bool):
        raise CheckpointError(f"{source}: apply_spec_augment={_clip(spec_augment)} must be true or false")
    if architecture == "Wav2Vec2ForCTC" and not spec_augment:
        fields["mask_prob"] = fields["mask_channel_prob"] = 0.0  # HF then never masks while fine-tuning
    if normalize is not None:
        fields["normalize_waveform"] = normalize
    elif "normalize_waveform" not in base:
        # No preprocessor config: the spec's convention (layer-norm CNN models were trained on z-normed audio).
        fields["normalize_waveform"] = fields["extractor_mode"] == "layer_norm"
    try:
        return Wav2Vec2Config.from_dict({**base, **fields})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: {_hf_words(str(exc))}") from None


def _check_hf_supported(hf: dict, source: str | Path) -> None:
    """Reject an HF config that is not wav2vec2 or uses an option our model does not have."""
    for name, allowed in _UNSUPPORTED.items():
        if hf.get(name, allowed) != allowed:
            raise CheckpointError(f"{source}: {name}={hf[name]!r} is not supported (only {allowed!r})")
    if hf.get("model_type") != "wav2vec2":
        raise CheckpointError(f"{source}: model_type={hf.get('model_type')!r}, expected 'wav2vec2'")
    norm = hf.get("feat_extract_norm", "group")
    if not isinstance(norm, str) or norm not in _EXTRACTOR_MODES:
        raise CheckpointError(f"{source}: feat_extract_norm={norm!r}, expected 'group' or 'layer'")


def ignored_ctc_loss_fields(hf: dict) -> dict[str, Any]:
    """The CTC loss settings of an HF config (transformers' defaults where absent) that differ from xlsr's
    fixed loss (mean, zero_infinity=True): a model imported from it trains with ours instead."""
    return {name: hf.get(name, default) for name, default in _HF_CTC_LOSS_DEFAULTS.items()
            if hf.get(name, default) != _XLSR_CTC_LOSS[name]}  # fmt: skip


# Our field: (HF key, transformers' default where the key is absent). Values pass through unconverted, so that
# Wav2Vec2Config's checks see what the file holds ("0.1", 16.7 or "false" are refused, never read as 0.1, 16, True).
_HF_FIELDS: dict[str, tuple[str, Any]] = {
    "conv_bias": ("conv_bias", False),
    "hidden_size": ("hidden_size", None),
    "num_layers": ("num_hidden_layers", None),
    "num_heads": ("num_attention_heads", None),
    "ffn_dim": ("intermediate_size", None),
    "layer_norm_first": ("do_stable_layer_norm", False),
    "dropout": ("hidden_dropout", 0.1),
    "attention_dropout": ("attention_dropout", 0.1),
    "activation_dropout": ("activation_dropout", 0.1),
    "dropout_input": ("feat_proj_dropout", 0.0),
    "dropout_features": ("feat_quantizer_dropout", 0.0),
    "final_dropout": ("final_dropout", 0.1),
    "layerdrop": ("layerdrop", 0.1),
    "conv_pos": ("num_conv_pos_embeddings", 128),
    "conv_pos_groups": ("num_conv_pos_embedding_groups", 16),
    "layer_norm_eps": ("layer_norm_eps", 1e-5),
    "adapter_attn_dim": ("adapter_attn_dim", None),
    "final_dim": ("proj_codevector_dim", 256),
    "codevector_dim": ("codevector_dim", 256),
    "num_codevector_groups": ("num_codevector_groups", 2),
    "num_codevectors_per_group": ("num_codevectors_per_group", 320),
    "logit_temp": ("contrastive_logits_temperature", 0.1),
    "num_negatives": ("num_negatives", 100),
    "diversity_weight": ("diversity_loss_weight", 0.1),
    "mask_prob": ("mask_time_prob", 0.05),
    "mask_length": ("mask_time_length", 10),
    "min_masks": ("mask_time_min_masks", 2),
    "mask_channel_prob": ("mask_feature_prob", 0.0),
    "mask_channel_length": ("mask_feature_length", 10),
}
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "conv_dim", "conv_kernel", "conv_stride")


def _fields_from_hf(hf: dict, source: str | Path) -> dict[str, Any]:
    """Our config fields read from the HF keys (HF's defaults where a key is absent)."""
    for key in _REQUIRED:
        if key not in hf:
            raise CheckpointError(f"{source}: missing field {key!r}")
    cnn = {key: hf[key] for key in ("conv_dim", "conv_kernel", "conv_stride")}
    for key, value in cnn.items():
        if not isinstance(value, list):
            raise CheckpointError(f"{source}: {key}={_clip(value)} must be a list (one value per CNN layer)")
    if len({len(v) for v in cnn.values()}) != 1:
        raise CheckpointError(f"{source}: conv_dim, conv_kernel and conv_stride must have one value per CNN layer "
                              f"each; their lengths are {', '.join(str(len(v)) for v in cnn.values())}")
    fields: dict[str, Any] = {ours: hf.get(key, default) if hf.get(key) is not None else default
                              for ours, (key, default) in _HF_FIELDS.items()}
    fields["conv_layers"] = [list(layer) for layer in zip(*cnn.values())]
    fields["extractor_mode"] = _EXTRACTOR_MODES[hf.get("feat_extract_norm", "group")]
    if fields["layer_norm_first"] is not True:  # transformers builds MMS adapters in pre-LN ("stable") blocks only
        fields["adapter_attn_dim"] = None
    return fields


def _hf_words(message: str) -> str:
    """A Wav2Vec2Config message in the HF file's words: "Wav2Vec2Config.ffn_dim=0: ..." -> "intermediate_size=0: ..."."""
    if message.startswith("Wav2Vec2Config.conv_layers"):
        return f"conv_dim/conv_kernel/conv_stride (as {message})"
    return in_file_words(message, {ours: key for ours, (key, _) in _HF_FIELDS.items()})


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# One piece: the key-by-key map reads as a table; split, it would hide which field feeds which HF key.
def config_to_hf(cfg, architecture: str, vocab_size: int | None) -> dict:
    """An HF config.json dict for our config (our full config is kept under "xlsr_config")."""
    return {
        "architectures": [architecture],
        "model_type": "wav2vec2",
        "conv_dim": [d for d, _, _ in cfg.conv_layers],
        "conv_kernel": [k for _, k, _ in cfg.conv_layers],
        "conv_stride": [s for _, _, s in cfg.conv_layers],
        "num_feat_extract_layers": len(cfg.conv_layers),
        "feat_extract_norm": "layer" if cfg.extractor_mode == "layer_norm" else "group",
        "feat_extract_activation": "gelu",
        "conv_bias": cfg.conv_bias,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_dim,
        "hidden_act": "gelu",
        "do_stable_layer_norm": cfg.layer_norm_first,
        "hidden_dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout,
        "feat_proj_dropout": cfg.dropout_input,
        "feat_quantizer_dropout": cfg.dropout_features,
        "final_dropout": cfg.final_dropout,
        "layerdrop": cfg.layerdrop,
        "num_conv_pos_embeddings": cfg.conv_pos,
        "num_conv_pos_embedding_groups": cfg.conv_pos_groups,
        "layer_norm_eps": cfg.layer_norm_eps,
        "codevector_dim": cfg.codevector_dim,
        "proj_codevector_dim": cfg.final_dim,
        "num_codevector_groups": cfg.num_codevector_groups,
        "num_codevectors_per_group": cfg.num_codevectors_per_group,
        "contrastive_logits_temperature": cfg.logit_temp,
        "num_negatives": cfg.num_negatives,
        "diversity_loss_weight": cfg.diversity_weight,
        **hf_masking(cfg.to_dict(), architecture),
        "vocab_size": int(vocab_size) if vocab_size else 32,
        "pad_token_id": 0,  # the CTC blank
        "bos_token_id": None,
        "eos_token_id": None,
        "ctc_loss_reduction": "mean",
        "ctc_zero_infinity": True,
        "add_adapter": False,
        "adapter_attn_dim": cfg.adapter_attn_dim,
        "output_hidden_size": cfg.hidden_size,
        "use_weighted_layer_sum": False,
        "xlsr_config": cfg.to_dict(),
    }


# Our masking field: its HF key.
_MASK_KEYS = {"mask_prob": "mask_time_prob", "mask_length": "mask_time_length", "min_masks": "mask_time_min_masks",
              "mask_channel_prob": "mask_feature_prob", "mask_channel_length": "mask_feature_length"}
# transformers' SpecAugment for fine-tuning: Wav2Vec2Config()'s values, which the hub's pretrained configs hold too
# (wav2vec2-base 0.05; XLS-R-300M 0.075, with mask_time_length 10 and no feature masking; checkpoints.md §7.5).
_HF_FINE_TUNING_MASKS = {"apply_spec_augment": True, "mask_time_prob": 0.05, "mask_time_length": 10,
                         "mask_time_min_masks": 2, "mask_feature_prob": 0.0, "mask_feature_length": 10,
                         "mask_feature_min_masks": 0}


def hf_masking(masks: dict, architecture: str) -> dict[str, Any]:
    """config.json's SpecAugment keys for our masking fields `masks` (a Wav2Vec2Config dict).

    A CTC model's own masking is what it was fine-tuned with: written as is. Any other model's is its pretraining
    objective's (65% of frames), which transformers would apply while fine-tuning it (Wav2Vec2Model._mask_hidden_states):
    transformers' fine-tuning values are written instead. A model that masks nothing keeps that (no masking is a
    fine-tuning setting, and transformers then has no masked_spec_embed either).
    """
    masks_nothing = masks["mask_prob"] == 0 and masks["mask_channel_prob"] == 0
    if architecture != "Wav2Vec2ForCTC" and not masks_nothing:
        return dict(_HF_FINE_TUNING_MASKS)
    return _own_masking(masks)


def _own_masking(masks: dict) -> dict[str, Any]:
    return {"apply_spec_augment": True, **{key: masks[ours] for ours, key in _MASK_KEYS.items()},
            "mask_feature_min_masks": 0}


def keeps_xlsr_record(hf: dict, architecture: str) -> bool:
    """Whether config.json carries xlsr's own record ("xlsr_config") of the model's training settings with its
    SpecAugment keys still as `config_to_hf` wrote them for it (or as earlier exports did: the record's own values):
    the record is then the file's truth. Keys changed since (by hand, or by transformers saving the CTC model it
    fine-tuned) make the HF keys the truth."""
    record = hf.get("xlsr_config")
    if not isinstance(record, dict) or any(ours not in record for ours in _MASK_KEYS):
        return False
    held = {key: default if hf.get(key) is None else hf[key] for key, default in _HF_FINE_TUNING_MASKS.items()}
    return held in (hf_masking(record, architecture), _own_masking(record))


def spec_augment_note(cfg, architecture: str) -> str | None:
    """One sentence for an export whose SpecAugment keys are transformers' values, not the model's; else None."""
    written = hf_masking(cfg.to_dict(), architecture)
    own = {ours: getattr(cfg, ours) for ours in _MASK_KEYS}
    if all(written[key] == own[ours] for ours, key in _MASK_KEYS.items()):
        return None
    return ("config.json has transformers' SpecAugment values for fine-tuning ("
            + ", ".join(f"{key} {written[key]}" for key in _MASK_KEYS.values())
            + ") as the hub's pretrained configs do; this model's own masking ("
            + ", ".join(f"{ours} {value}" for ours, value in own.items())
            + ") is kept under xlsr_config, which xlsr reads back")


def hf_has_mask_embedding(hf: dict) -> bool:
    # transformers creates masked_spec_embed only when some masking is configured.
    return float(hf.get("mask_time_prob", 0.05)) > 0 or float(hf.get("mask_feature_prob", 0.0)) > 0
