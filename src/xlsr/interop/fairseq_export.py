"""Write our models as fairseq wav2vec 2.0 checkpoints that fairseq's own loader rebuilds.

A pretraining model becomes a `wav2vec2` model of the `audio_pretraining` task; a CTC model becomes a
`wav2vec_ctc` model of the `audio_finetuning` task, its pretraining config nested as `w2v_args` (as
fairseq stores a fine-tuned model), its head in fairseq's dictionary order, and the dictionary beside
it as `dict.<labels>.txt`. The file holds only dicts, lists, strings, numbers and tensors, so
`torch.load(..., weights_only=True)` reads it, and so does fairseq 0.12.2 (checked by
tests/interop/test_fairseq_reference.py against fairseq itself).

Keys are the inverse of fairseq.py's tables (reference/checkpoints.md §7.1); the config carries every
field our architecture sets, in fairseq's names, and leaves the rest to fairseq's defaults.
What fairseq's wav2vec 2.0 cannot hold is refused with the reason: a trained feature projection
where the CNN width equals the Transformer's (fairseq has none there), a LayerNorm epsilon other
than 1e-5, MMS adapters (export those to Hugging Face).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from xlsr.atomic import save_torch, write_dir
from xlsr.errors import CheckpointError
from xlsr.interop.ctc_head import NEVER_PREDICTED_BIAS
from xlsr.interop.fairseq import FAIRSEQ_SPECIALS
from xlsr.interop.native import model_config, tensors_for_saving, vocab_tokens
from xlsr.model import Wav2Vec2Config
from xlsr.text.vocab import BLANK, UNK, guess_kind

CHECKPOINT_NAME = "checkpoint.pt"
FINETUNED_PREFIX = "w2v_encoder.w2v_model."
SAMPLE_RATE = 16_000

# our Wav2Vec2Model key → fairseq Wav2Vec2Model key (full matches; the layer_norm CNN's norm sits one level deeper)
_BODY_TO_FAIRSEQ: list[tuple[str, str]] = [
    (r"mask_embedding", "mask_emb"),
    (r"feature_encoder\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"feature_projection\.(weight|bias)", r"post_extract_proj.\1"),
    (r"encoder\.pos_conv\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"encoder\.pos_conv\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"encoder\.norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.attention_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.fc([12])\.(weight|bias)", r"encoder.layers.\1.fc\2.\3"),
    (r"encoder\.layers\.(\d+)\.final_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
]
_CNN_NORM = re.compile(r"feature_encoder\.conv_layers\.(\d+)\.norm\.(weight|bias)")
_PRETRAINING_TO_FAIRSEQ: list[tuple[str, str]] = [
    (r"quantizer\.codevectors", "quantizer.vars"),
    (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"project_q\.(weight|bias)", r"project_q.\1"),
    (r"final_proj\.(weight|bias)", r"final_proj.\1"),
]


# ---------------------------------------------------------------------------- config
def conv_feature_layers(cfg: Wav2Vec2Config) -> str:
    """fairseq's conv_feature_layers string: a list display of (dim, kernel, stride) tuples."""
    return "[" + ", ".join(f"({d}, {k}, {s})" for d, k, s in cfg.conv_layers) + "]"


def fairseq_model_args(cfg: Wav2Vec2Config) -> dict[str, Any]:
    """The `wav2vec2` model config (fairseq names) that builds the same network as `cfg`."""
    return {
        "_name": "wav2vec2",
        "extractor_mode": "layer_norm" if cfg.extractor_mode == "layer_norm" else "default",
        "conv_feature_layers": conv_feature_layers(cfg),
        "conv_bias": bool(cfg.conv_bias),
        "feature_grad_mult": float(cfg.feature_grad_mult),
        "encoder_layers": cfg.num_layers,
        "encoder_embed_dim": cfg.hidden_size,
        "encoder_ffn_embed_dim": cfg.ffn_dim,
        "encoder_attention_heads": cfg.num_heads,
        "activation_fn": "gelu",
        "layer_type": "transformer",
        "layer_norm_first": bool(cfg.layer_norm_first),
        "dropout": float(cfg.dropout),
        "attention_dropout": float(cfg.attention_dropout),
        "activation_dropout": float(cfg.activation_dropout),
        "dropout_input": float(cfg.dropout_input),
        "dropout_features": float(cfg.dropout_features),
        "encoder_layerdrop": float(cfg.layerdrop),
        "conv_pos": cfg.conv_pos,
        "conv_pos_groups": cfg.conv_pos_groups,
        "pos_conv_depth": 1,
        "final_dim": cfg.final_dim,
        "quantize_targets": True,
        "quantize_input": False,
        "same_quantizer": False,
        "target_glu": False,
        "latent_vars": cfg.num_codevectors_per_group,
        "latent_groups": cfg.num_codevector_groups,
        "latent_dim": cfg.codevector_dim,
        "quantizer_depth": 1,
        "latent_temp": [float(t) for t in cfg.latent_temp],
        "logit_temp": float(cfg.logit_temp),
        "num_negatives": cfg.num_negatives,
        "cross_sample_negatives": cfg.cross_sample_negatives,
        "codebook_negatives": 0,
        "negatives_from_everywhere": False,
        "mask_prob": float(cfg.mask_prob),
        "mask_length": cfg.mask_length,
        "mask_selection": "static",
        "mask_other": 0.0,
        "no_mask_overlap": False,
        "mask_min_space": 1,
        "mask_channel_prob": float(cfg.mask_channel_prob),
        "mask_channel_length": cfg.mask_channel_length,
        "mask_channel_selection": "static",
        "mask_channel_other": 0.0,
        "no_mask_channel_overlap": False,
        "mask_channel_min_space": 1,
        "mask_channel_before": False,
        "require_same_masks": True,
        "mask_dropout": 0.0,
        "checkpoint_activations": False,
    }


def _pretraining_task(cfg: Wav2Vec2Config, data: str) -> dict[str, Any]:
    return {"_name": "audio_pretraining", "data": data, "sample_rate": SAMPLE_RATE,
            "normalize": bool(cfg.normalize_waveform), "enable_padding": False}  # fmt: skip


def _ctc_model_args(cfg: Wav2Vec2Config, data: str) -> dict[str, Any]:
    """The `wav2vec_ctc` config: the fine-tuning run's regularisation, the pretraining config as w2v_args."""
    return {
        "_name": "wav2vec_ctc",
        "w2v_path": "",
        "no_pretrained_weights": False,
        "apply_mask": True,
        "dropout": float(cfg.dropout),
        "attention_dropout": float(cfg.attention_dropout),
        "activation_dropout": float(cfg.activation_dropout),
        "dropout_input": float(cfg.dropout_input),
        "final_dropout": float(cfg.final_dropout),
        "mask_prob": float(cfg.mask_prob),
        "mask_length": cfg.mask_length,
        "mask_channel_prob": float(cfg.mask_channel_prob),
        "mask_channel_length": cfg.mask_channel_length,
        "layerdrop": float(cfg.layerdrop),
        "feature_grad_mult": float(cfg.feature_grad_mult),
        "freeze_finetune_updates": 0,
        "normalize": bool(cfg.normalize_waveform),
        "data": data,
        "w2v_args": {"model": fairseq_model_args(cfg), "task": _pretraining_task(cfg, data)},
    }


def fairseq_config(cfg: Wav2Vec2Config, architecture: str, data: str, labels: str | None) -> dict[str, Any]:
    """The checkpoint's `cfg` entry (model, task, criterion) as fairseq 0.12's trainer writes it: plain data."""
    if architecture == "Wav2Vec2ForCTC":
        task = {"_name": "audio_finetuning", "data": data, "labels": labels, "sample_rate": SAMPLE_RATE,
                "normalize": bool(cfg.normalize_waveform), "enable_padding": False}  # fmt: skip
        return {"_name": None, "model": _ctc_model_args(cfg, data), "task": task,
                "criterion": {"_name": "ctc", "zero_infinity": True}}  # fmt: skip
    return {"_name": None, "model": fairseq_model_args(cfg), "task": _pretraining_task(cfg, data),
            "criterion": {"_name": "wav2vec", "infonce": True,
                          "loss_weights": [float(cfg.diversity_weight), float(cfg.feature_penalty_weight)],
                          "log_keys": ["prob_perplexity", "code_perplexity", "temp"]}}  # fmt: skip


# ---------------------------------------------------------------------------- what fairseq cannot hold
def check_exportable(cfg: Wav2Vec2Config, body: dict[str, torch.Tensor], dst) -> None:
    """A CheckpointError naming what of this model fairseq's wav2vec 2.0 has no place for."""
    if cfg.adapter_attn_dim:
        raise CheckpointError(f"{dst}: a model with MMS adapters: fairseq keeps them in its own MMS model; "
                              f"export it to Hugging Face instead (--to hf)")
    if cfg.layer_norm_eps != 1e-5:
        raise CheckpointError(f"{dst}: layer_norm_eps={cfg.layer_norm_eps}: fairseq's LayerNorms use 1e-5 only")
    if cfg.conv_dim == cfg.hidden_size:
        weight, bias = body["feature_projection.weight"], body["feature_projection.bias"]
        if not (torch.equal(weight, torch.eye(cfg.hidden_size, dtype=weight.dtype)) and not bias.any()):
            raise CheckpointError(
                f"{dst}: fairseq has no feature projection when the CNN's width equals the Transformer's "
                f"({cfg.hidden_size}), and this model's projection is not the identity; export it to Hugging "
                f"Face instead (--to hf), which keeps the projection")


# ---------------------------------------------------------------------------- the state dict
def _rename(body: dict[str, torch.Tensor], table: list[tuple[str, str]], cfg: Wav2Vec2Config,
            prefix: str) -> dict[str, torch.Tensor]:
    compiled = [(re.compile(p), r) for p, r in table]
    layer_norm_cnn = cfg.extractor_mode == "layer_norm"
    out = {}
    for key, value in body.items():
        norm = _CNN_NORM.fullmatch(key)
        if norm:  # GroupNorm at index 2 of layer 0; a LayerNorm inside Sequential(Transpose, LN, Transpose)
            out[f"{prefix}feature_extractor.conv_layers.{norm[1]}.2{'.1' if layer_norm_cnn else ''}.{norm[2]}"] = value
            continue
        if key.startswith("feature_projection.") and cfg.conv_dim == cfg.hidden_size:
            continue  # the identity (check_exportable): fairseq builds no post_extract_proj here
        for pattern, repl in compiled:
            if pattern.fullmatch(key):
                out[prefix + pattern.sub(repl, key)] = value
                break
        else:
            raise CheckpointError(f"no fairseq name for {key}")
    return out


def fairseq_head(weight: torch.Tensor, bias: torch.Tensor, tokens: list[str]
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Our head (<blank>, <unk>, symbols) in fairseq's dictionary order (<s>, <pad>, </s>, <unk>, symbols).

    fairseq's <s> is its CTC blank. A <pad> or </s> row we carry (a model imported from fairseq) is put
    back in its place; one we lack is added as a row that is never predicted. A Hugging Face model's <s> row
    (its bos, beside <pad> as its blank) takes fairseq's <pad> place, as transformers' converter pairs the two;
    fairseq's dictionary has no other place for a symbol named <s>. Returns the rows and the symbols of
    dict.<labels>.txt (the tokens after the four specials).
    """
    if tokens[:2] != [BLANK, UNK]:
        raise CheckpointError(f"vocabulary must start with {BLANK!r}, {UNK!r}; got {tokens[:2]}")
    rows, extra = [], 0
    weights, biases = [], []

    def take(index: int | None) -> None:
        nonlocal extra
        if index is None:
            weights.append(torch.zeros_like(weight[0]))
            biases.append(torch.full_like(bias[0], NEVER_PREDICTED_BIAS))
            extra += 1
        else:
            weights.append(weight[index])
            biases.append(bias[index])
            rows.append(index)

    position = {token: i for i, token in enumerate(tokens)}
    if "<s>" in position:
        if "<pad>" in position:  # both are trained rows; fairseq's dictionary holds one of them
            raise CheckpointError(f"vocabulary has both '<pad>' (row {position['<pad>']}) and '<s>' (row "
                                  f"{position['<s>']}); fairseq's dictionary has one place for them (<pad>)")
        position["<pad>"] = position.pop("<s>")
    for special in (BLANK, "<pad>", "</s>", UNK):
        take(position.get(special))
    symbols = [t for t in tokens[2:] if t not in FAIRSEQ_SPECIALS]
    for symbol in symbols:
        take(position[symbol])
    return torch.stack(weights), torch.stack(biases), symbols


def fairseq_dictionary_text(symbols: list[str]) -> str:
    """dict.<labels>.txt: one '<symbol> <count>' line per symbol (counts are not used by CTC; 1 each)."""
    for symbol in symbols:
        if not symbol or any(c.isspace() for c in symbol):
            raise CheckpointError(f"token {symbol!r}: a fairseq dictionary symbol cannot be empty or hold spaces")
    return "".join(f"{symbol} 1\n" for symbol in symbols)


def fairseq_state(model: torch.nn.Module, cfg: Wav2Vec2Config, tokens: list[str] | None, dst
                  ) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """(the `model` entry of the checkpoint, the dictionary's symbols or None) for one of our models."""
    architecture = type(model).__name__
    state = tensors_for_saving(model)
    if architecture == "Wav2Vec2ForCTC":
        body = {k[len("wav2vec2."):]: v for k, v in state.items() if k.startswith("wav2vec2.")}
        check_exportable(cfg, body, dst)
        out = _rename(body, _BODY_TO_FAIRSEQ, cfg, FINETUNED_PREFIX)
        if tokens is None:
            raise CheckpointError(f"{dst}: a CTC model needs its vocabulary for a fairseq dictionary")
        if len(tokens) != state["lm_head.weight"].shape[0]:
            raise CheckpointError(f"{dst}: vocabulary has {len(tokens)} tokens but the head has "
                                  f"{state['lm_head.weight'].shape[0]} rows")
        try:
            weight, bias, symbols = fairseq_head(state["lm_head.weight"], state["lm_head.bias"], tokens)
        except CheckpointError as exc:
            raise CheckpointError(f"{dst}: {exc}") from None
        out["w2v_encoder.proj.weight"], out["w2v_encoder.proj.bias"] = weight, bias
        return out, symbols
    if architecture == "Wav2Vec2ForPreTraining":
        body = {k[len("wav2vec2."):]: v for k, v in state.items() if k.startswith("wav2vec2.")}
        heads = {k: v for k, v in state.items() if not k.startswith("wav2vec2.")}
        check_exportable(cfg, body, dst)
        return {**_rename(body, _BODY_TO_FAIRSEQ, cfg, ""), **_rename(heads, _PRETRAINING_TO_FAIRSEQ, cfg, "")}, None
    raise CheckpointError(f"{dst}: fairseq's wav2vec 2.0 holds a pretraining model (with its quantizer) or a CTC "
                          f"model; this is a {architecture}")


# ---------------------------------------------------------------------------- the file
def _replaceable(dst: Path) -> bool:
    """An empty folder, or one holding only an earlier export (checkpoint.pt and dict.*.txt)."""
    names = [p.name for p in dst.iterdir()]
    return all(n == CHECKPOINT_NAME or re.fullmatch(r"dict\.[\w.-]+\.txt", n) for n in names)


def export_fairseq(model: torch.nn.Module, dst: str | Path, vocab=None, *, kind: str | None = None) -> Path:
    """Write `model` to the folder `dst` as fairseq's checkpoint.pt (+ dict.ltr.txt or dict.phn.txt), atomically.

    The config's task `data` points at `dst` itself, where fairseq looks for the dictionary; after moving
    the folder, load it with `arg_overrides={"data": NEW_FOLDER}`.
    """
    dst = Path(dst).resolve()
    if dst.exists() and not (dst.is_dir() and _replaceable(dst)):
        raise CheckpointError(f"{dst}: exists and is not an earlier fairseq export; not replacing it "
                              f"(choose another path)")
    cfg = model_config(model)
    tokens = vocab_tokens(vocab)
    architecture = type(model).__name__
    state, symbols = fairseq_state(model, cfg, tokens, dst)
    labels = None
    if symbols is not None:
        kind = kind or getattr(vocab, "kind", None) or guess_kind([t for t in tokens if t not in FAIRSEQ_SPECIALS])
        labels = "phn" if kind == "phones" else "ltr"
    checkpoint = {
        "args": None,
        "cfg": fairseq_config(cfg, architecture, str(dst), labels),
        "model": state,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "CtcCriterion" if labels else "Wav2vecCriterion",
                               "optimizer_name": "FairseqAdam", "lr_scheduler_state": {}, "num_updates": 0}],
        "task_state": {},
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
    }

    def write(tmp: Path) -> None:
        save_torch(checkpoint, tmp / CHECKPOINT_NAME)  # a full disk: an OSError naming the file
        if symbols is not None:
            (tmp / f"dict.{labels}.txt").write_text(fairseq_dictionary_text(symbols), encoding="utf-8")

    return write_dir(dst, write)
