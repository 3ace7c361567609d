"""The Hugging Face wav2vec2 key map: our state-dict names <-> transformers' names, as one explicit table.

Each row is an (ours, HF) template; `{n}` is a layer index, `{p}` weight or bias, `{proj}` an attention projection.
`key_table` compiles the rows for one direction and `rename` applies them (reference/checkpoints.md §7.2).
"""

from __future__ import annotations

import re

import torch

HF_PREFIX = "wav2vec2."
_WN = "parametrizations.weight.original"  # + 0 (g) / 1 (v)

# (ours, HF) key templates for Wav2Vec2Model, without the "wav2vec2." prefix. {n}: an index.
BODY_KEYS: list[tuple[str, str]] = [
    ("feature_encoder.conv_layers.{n}.conv.{p}", "feature_extractor.conv_layers.{n}.conv.{p}"),
    ("feature_encoder.conv_layers.{n}.norm.{p}", "feature_extractor.conv_layers.{n}.layer_norm.{p}"),
    ("feature_norm.{p}", "feature_projection.layer_norm.{p}"),
    ("feature_projection.{p}", "feature_projection.projection.{p}"),
    ("mask_embedding", "masked_spec_embed"),
    ("encoder.pos_conv.conv.bias", "encoder.pos_conv_embed.conv.bias"),
    (f"encoder.pos_conv.conv.{_WN}0", f"encoder.pos_conv_embed.conv.{_WN}0"),
    (f"encoder.pos_conv.conv.{_WN}1", f"encoder.pos_conv_embed.conv.{_WN}1"),
    ("encoder.norm.{p}", "encoder.layer_norm.{p}"),
    ("encoder.layers.{n}.attention.{proj}.{p}", "encoder.layers.{n}.attention.{proj}.{p}"),
    ("encoder.layers.{n}.attention_norm.{p}", "encoder.layers.{n}.layer_norm.{p}"),
    ("encoder.layers.{n}.feed_forward.fc1.{p}", "encoder.layers.{n}.feed_forward.intermediate_dense.{p}"),
    ("encoder.layers.{n}.feed_forward.fc2.{p}", "encoder.layers.{n}.feed_forward.output_dense.{p}"),
    ("encoder.layers.{n}.final_norm.{p}", "encoder.layers.{n}.final_layer_norm.{p}"),
    ("encoder.layers.{n}.adapter.norm.{p}", "encoder.layers.{n}.adapter_layer.norm.{p}"),  # MMS
    ("encoder.layers.{n}.adapter.down.{p}", "encoder.layers.{n}.adapter_layer.linear_1.{p}"),
    ("encoder.layers.{n}.adapter.up.{p}", "encoder.layers.{n}.adapter_layer.linear_2.{p}"),
]
# Heads of Wav2Vec2ForPreTraining / Wav2Vec2ForCTC (top level in both).
HEAD_KEYS: list[tuple[str, str]] = [
    ("quantizer.codevectors", "quantizer.codevectors"),
    ("quantizer.weight_proj.{p}", "quantizer.weight_proj.{p}"),
    ("project_q.{p}", "project_q.{p}"),
    ("final_proj.{p}", "project_hid.{p}"),
    ("lm_head.{p}", "lm_head.{p}"),
]
_PLACEHOLDERS = {"n": r"(?P<n>\d+)", "p": r"(?P<p>weight|bias)", "proj": r"(?P<proj>(?:q|k|v|out)_proj)"}
# transformers saves weight norm either way depending on the PyTorch it ran on (checkpoints.md §7.2).
_LEGACY_WEIGHT_NORM = [(re.compile(r"\.weight_g$"), f".{_WN}0"), (re.compile(r"\.weight_v$"), f".{_WN}1")]


def _compile(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join(_PLACEHOLDERS[p[1:-1]] if p.startswith("{") else re.escape(p) for p in parts))


def key_table(direction: str, prefixed: bool, adapters: bool = False) -> list[tuple[re.Pattern, str]]:
    """(pattern, template) pairs mapping ours→HF ("to_hf") or HF→ours ("from_hf"); MMS adapters if `adapters`."""
    keys = [(o, h) for o, h in BODY_KEYS if adapters or ".adapter." not in o]
    body = [(HF_PREFIX + o, HF_PREFIX + h) if prefixed else (o, h) for o, h in keys]
    pairs = body + (HEAD_KEYS if prefixed else [])
    if direction == "to_hf":
        return [(_compile(o), h) for o, h in pairs]
    return [(_compile(h), o) for o, h in pairs]


def rename(state: dict[str, torch.Tensor], table) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename keys through the first full-matching pattern; return (renamed state, unmatched keys)."""
    out, unmatched = {}, []
    for key, value in state.items():
        for pattern, template in table:
            m = pattern.fullmatch(key)
            if m:
                out[template.format(**m.groupdict())] = value
                break
        else:
            unmatched.append(key)
    return out, unmatched


def with_current_weight_norm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with weight norm's legacy weight_g/weight_v keys under today's parametrization names."""
    for pattern, repl in _LEGACY_WEIGHT_NORM:
        state = {pattern.sub(repl, k): v for k, v in state.items()}
    return state
