"""Hugging Face wav2vec2 config.json <-> our Wav2Vec2Config, field by field in both directions.

Options transformers has and our model lacks are refused by name (`_UNSUPPORTED`); our whole config also
travels under "xlsr_config", so a directory we wrote reads back exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlsr.errors import CheckpointError
from xlsr.model import Wav2Vec2Config

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
    base = dict(hf.get("xlsr_config") or {})
    fields = _fields_from_hf(hf, source)
    if architecture == "Wav2Vec2ForCTC" and not hf.get("apply_spec_augment", True):
        fields["mask_prob"] = fields["mask_channel_prob"] = 0.0  # HF then never masks while fine-tuning
    if normalize is not None:
        fields["normalize_waveform"] = normalize
    elif "normalize_waveform" not in base:
        # No preprocessor config: the spec's convention (layer-norm CNN models were trained on z-normed audio).
        fields["normalize_waveform"] = fields["extractor_mode"] == "layer_norm"
    try:
        return Wav2Vec2Config.from_dict({**base, **fields})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: {exc}") from None


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


# One piece: the field-by-field map reads as a table; split, it would hide which HF key feeds which field.
def _fields_from_hf(hf: dict, source: str | Path) -> dict[str, Any]:
    """Our config fields read from the HF keys (HF's defaults where a key is absent)."""
    try:
        conv = list(zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"], strict=True))
        fields: dict[str, Any] = dict(
            conv_layers=conv,
            extractor_mode=_EXTRACTOR_MODES[hf.get("feat_extract_norm", "group")],
            conv_bias=bool(hf.get("conv_bias", False)),
            hidden_size=int(hf["hidden_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=int(hf["num_attention_heads"]),
            ffn_dim=int(hf["intermediate_size"]),
            layer_norm_first=bool(hf.get("do_stable_layer_norm", False)),
            dropout=float(hf.get("hidden_dropout", 0.1)),
            attention_dropout=float(hf.get("attention_dropout", 0.1)),
            activation_dropout=float(hf.get("activation_dropout", 0.1)),
            dropout_input=float(hf.get("feat_proj_dropout", 0.0)),
            dropout_features=float(hf.get("feat_quantizer_dropout", 0.0)),
            final_dropout=float(hf.get("final_dropout", 0.1)),
            layerdrop=float(hf.get("layerdrop", 0.1)),
            conv_pos=int(hf.get("num_conv_pos_embeddings", 128)),
            conv_pos_groups=int(hf.get("num_conv_pos_embedding_groups", 16)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
            # transformers builds MMS adapters in pre-LN ("stable") blocks only.
            adapter_attn_dim=(int(hf["adapter_attn_dim"]) if hf.get("adapter_attn_dim") is not None
                              and hf.get("do_stable_layer_norm") else None),
            final_dim=int(hf.get("proj_codevector_dim", 256)),
            codevector_dim=int(hf.get("codevector_dim", 256)),
            num_codevector_groups=int(hf.get("num_codevector_groups", 2)),
            num_codevectors_per_group=int(hf.get("num_codevectors_per_group", 320)),
            logit_temp=float(hf.get("contrastive_logits_temperature", 0.1)),
            num_negatives=int(hf.get("num_negatives", 100)),
            diversity_weight=float(hf.get("diversity_loss_weight", 0.1)),
            mask_prob=float(hf.get("mask_time_prob", 0.05)),
            mask_length=int(hf.get("mask_time_length", 10)),
            min_masks=int(hf.get("mask_time_min_masks", 2)),
            mask_channel_prob=float(hf.get("mask_feature_prob", 0.0)),
            mask_channel_length=int(hf.get("mask_feature_length", 10)),
        )
    except KeyError as exc:
        raise CheckpointError(f"{source}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: conv_dim/conv_kernel/conv_stride or a size field is malformed ({exc})") from None
    return fields


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
        "apply_spec_augment": True,
        "mask_time_prob": cfg.mask_prob,
        "mask_time_length": cfg.mask_length,
        "mask_time_min_masks": cfg.min_masks,
        "mask_feature_prob": cfg.mask_channel_prob,
        "mask_feature_length": cfg.mask_channel_length,
        "mask_feature_min_masks": 0,
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


def hf_has_mask_embedding(hf: dict) -> bool:
    # transformers creates masked_spec_embed only when some masking is configured.
    return float(hf.get("mask_time_prob", 0.05)) > 0 or float(hf.get("mask_feature_prob", 0.0)) > 0
