"""Hugging Face transformers wav2vec2 directories: import to our model and export from it.

An HF directory holds config.json (model_type "wav2vec2"), weights (model.safetensors or
pytorch_model.bin, possibly sharded with an *.index.json), and for CTC models a tokenizer
(vocab.json, tokenizer_config.json, special_tokens_map.json) and preprocessor_config.json.
transformers is not needed for either direction; the key table below is the whole mapping
(reference/checkpoints.md §7.2). In HF the CTC blank is the pad token; ours is `<blank>` at 0.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from xlsr.errors import CheckpointError, listing
from xlsr.interop.adapters import choose_language, hf_languages, with_hf_adapter
from xlsr.interop.ctc_head import to_convention
from xlsr.interop.hf_tokenizer import hf_preprocessor_config, hf_tokenizer_files, read_hf_vocab
from xlsr.interop.native import (
    ARCHITECTURES,
    Loaded,
    model_config,
    model_with_weights,
    read_json,
    read_safetensors,
    tensors_for_saving,
    vocab_tokens,
    write_atomic_dir,
)
from xlsr.interop.safetensors_file import write_safetensors
from xlsr.model import Wav2Vec2Config

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


def _table(direction: str, prefixed: bool, adapters: bool = False) -> list[tuple[re.Pattern, str]]:
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


# ---------------------------------------------------------------------------- config
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


# One piece: the field-by-field map reads as a table; split, it would hide which HF key feeds which field.
def _fields_from_hf(hf: dict, source: str | Path) -> dict[str, Any]:
    """Our config fields read from the HF keys (HF's defaults where a key is absent)."""
    try:
        conv = list(zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"], strict=True))
        fields: dict[str, Any] = dict(
            conv_layers=conv,
            extractor_mode={"group": "group_norm", "layer": "layer_norm"}[hf.get("feat_extract_norm", "group")],
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


def _hf_has_mask_embedding(hf: dict) -> bool:
    # transformers creates masked_spec_embed only when some masking is configured.
    return float(hf.get("mask_time_prob", 0.05)) > 0 or float(hf.get("mask_feature_prob", 0.0)) > 0


# ---------------------------------------------------------------------------- weights on disk
def read_hf_weights(dir: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of an HF directory (single file or shards) and the file that names them."""
    for index_name, loader in (("model.safetensors.index.json", read_safetensors),
                               ("pytorch_model.bin.index.json", _read_torch_weights)):  # fmt: skip
        index_path = dir / index_name
        if index_path.is_file():
            weight_map = read_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index_path}: no weight_map")
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(loader(dir / shard))
            missing = sorted(set(weight_map) - set(state))
            if missing:
                raise CheckpointError(f"{index_path}: shards lack keys {listing(missing)}")
            return state, index_path
    for name, loader in (("model.safetensors", read_safetensors), ("pytorch_model.bin", _read_torch_weights)):
        if (dir / name).is_file():
            return loader(dir / name), dir / name
    raise CheckpointError(f"{dir}: no weights (model.safetensors, pytorch_model.bin or a sharded *.index.json)")


def _read_torch_weights(path: Path) -> dict[str, torch.Tensor]:
    # weights_only=True: torch's own restricted unpickler; a state dict needs nothing more.
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: unreadable or unsafe torch weights ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return state


def is_hf_dir(path: str | Path) -> bool:
    """Whether `path` is a directory with an HF wav2vec2 config.json."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "wav2vec2"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


# ---------------------------------------------------------------------------- import / export
_LABELS_OF_TOKENIZER = {"Wav2Vec2PhonemeCTCTokenizer": "phones", "Wav2Vec2CTCTokenizer": "chars"}


def _architecture_from_keys(state: dict) -> str:
    if "lm_head.weight" in state:
        return "Wav2Vec2ForCTC"
    if "quantizer.codevectors" in state:
        return "Wav2Vec2ForPreTraining"
    if any(k.startswith(HF_PREFIX) for k in state):
        return "Wav2Vec2ForPreTraining"  # another head: the strict load will list what does not fit
    return "Wav2Vec2Model"


def import_hf(dir: str | Path, *, target_lang: str | None = None) -> Loaded:
    """Rebuild an HF wav2vec2 directory (Model, ForPreTraining or ForCTC) as our model, with its vocabulary.

    For an MMS directory with per-language adapters, `target_lang` picks the language's adapters, head
    and vocabulary (as transformers' load_adapter does); without it, or with one it lacks, one line
    lists the languages it has.
    """
    dir = Path(dir)
    cfg_path = dir / "config.json"
    hf = read_json(cfg_path)
    state, weights_path, lang = _read_hf_state(dir, target_lang)
    architecture = _architecture_from_keys(state)
    normalize = None
    if (dir / "preprocessor_config.json").is_file():
        normalize = read_json(dir / "preprocessor_config.json").get("do_normalize")
    cfg = config_from_hf(hf, cfg_path, architecture=architecture,
                         normalize=None if normalize is None else bool(normalize))
    prefixed = architecture != "Wav2Vec2Model"
    ours, unmatched = rename(state, _table("from_hf", prefixed, adapters=bool(cfg.adapter_attn_dim)))
    if unmatched:
        raise CheckpointError(f"{weights_path}: unexpected keys (not supported): {listing(sorted(unmatched))}")
    metadata: dict[str, Any] = {"source": str(dir), **({"target_lang": lang} if lang else {})}
    mask_key = (HF_PREFIX if prefixed else "") + "mask_embedding"
    if mask_key not in ours and not _hf_has_mask_embedding(hf):
        # transformers omits masked_spec_embed when no masking is configured; fairseq's init is U[0, 1).
        ours[mask_key] = torch.rand(cfg.hidden_size, generator=torch.Generator().manual_seed(0))
        metadata["initialized"] = [mask_key]
    vocab_size = None
    vocab = None
    if architecture == "Wav2Vec2ForCTC":
        vocab_size = ours["lm_head.weight"].shape[0]
        vocab = _ctc_vocab(dir, hf, ours, lang, metadata)
    model = model_with_weights(architecture, cfg, vocab_size, ours, weights_path)
    return Loaded(model, cfg, vocab, "hf", metadata)


def _read_hf_state(dir: Path, target_lang: str | None) -> tuple[dict[str, torch.Tensor], Path, str | None]:
    """The directory's tensors with the chosen MMS language's adapters in and weight norm under today's names."""
    state, weights_path = read_hf_weights(dir)
    languages, named_in = hf_languages(dir)
    lang = choose_language(named_in, languages, target_lang) if languages or target_lang is not None else None
    if lang is not None:
        state = with_hf_adapter(dir, state, lang)
    for pattern, repl in _LEGACY_WEIGHT_NORM:
        state = {pattern.sub(repl, k): v for k, v in state.items()}
    return state, weights_path, lang


def _ctc_vocab(dir: Path, hf: dict, ours: dict[str, torch.Tensor], lang: str | None, metadata: dict) -> list | None:
    """The CTC vocabulary in our convention, moving lm_head rows to match; notes row order and labels in metadata."""
    vocab_size = ours["lm_head.weight"].shape[0]
    pad_id = int(hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0)
    if not 0 <= pad_id < vocab_size:
        raise CheckpointError(f"{dir / 'config.json'}: pad_token_id={pad_id} outside the {vocab_size}-row lm_head")
    found = read_hf_vocab(dir, vocab_size, lang)
    vocab, unk_id = found if found is not None else (None, None)
    # Our convention: blank (HF's pad) at row 0, <unk> at row 1; rows move with their tokens.
    vocab, order = to_convention(ours, vocab, pad_id, unk_id)
    if order is not None:
        metadata["head_rows_from"] = order
    tokenizer_class = (read_json(dir / "tokenizer_config.json").get("tokenizer_class")
                       if (dir / "tokenizer_config.json").is_file() else None)  # fmt: skip
    if vocab is not None and tokenizer_class in _LABELS_OF_TOKENIZER:
        metadata["labels"] = _LABELS_OF_TOKENIZER[tokenizer_class]
    return vocab


def export_hf(model: torch.nn.Module, dir: str | Path, vocab=None, *, kind: str | None = None) -> Path:
    """Write `model` as an HF directory that transformers' from_pretrained loads (atomically).

    `vocab` (a Vocabulary or token list) adds the CTC tokenizer files; `kind` ("phones"/"chars")
    picks the tokenizer, by default the Vocabulary's kind or a guess from the symbols.
    """
    architecture = type(model).__name__
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{dir}: cannot export a {architecture}")
    cfg = model_config(model)
    if cfg.adapter_attn_dim and not cfg.layer_norm_first:
        raise CheckpointError(f"{dir}: transformers has MMS adapters in pre-LN blocks only; this model is post-LN")
    tokens = vocab_tokens(vocab)
    state = tensors_for_saving(model)
    vocab_size = state["lm_head.weight"].shape[0] if architecture == "Wav2Vec2ForCTC" else None
    if tokens is not None and vocab_size is not None and len(tokens) != vocab_size:
        raise CheckpointError(f"{dir}: vocabulary has {len(tokens)} tokens but lm_head has {vocab_size} rows")
    hf_config = config_to_hf(cfg, architecture, vocab_size or (len(tokens) if tokens else None))
    prefixed = architecture != "Wav2Vec2Model"
    hf_state, unmatched = rename(state, _table("to_hf", prefixed, adapters=bool(cfg.adapter_attn_dim)))
    if unmatched:
        raise CheckpointError(f"{dir}: no HF name for {listing(sorted(unmatched))}")
    if not _hf_has_mask_embedding(hf_config):
        hf_state.pop((HF_PREFIX if prefixed else "") + "masked_spec_embed", None)
    files = {"config.json": hf_config, "preprocessor_config.json": hf_preprocessor_config(cfg)}
    if tokens is not None:
        files.update(hf_tokenizer_files(tokens, kind or getattr(vocab, "kind", None)))

    def write(tmp: Path) -> None:
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        write_safetensors(tmp / "model.safetensors", hf_state, metadata={"format": "pt"})

    return write_atomic_dir(dir, write)
