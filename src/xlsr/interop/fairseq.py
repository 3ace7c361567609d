"""Load fairseq wav2vec 2.0 / XLSR / XLS-R / MMS checkpoints (pretrained and CTC fine-tuned) without fairseq.

The `.pt` file is unpickled by `safe_pickle` (no code runs), its config (`cfg["model"]`, or the
old `args` Namespace; for fine-tuned models `w2v_args`) becomes our Wav2Vec2Config, and its keys
are renamed by the explicit regex tables below (reference/checkpoints.md §7.1). Every key must
be mapped and every parameter of our model filled, otherwise the load fails listing the names.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from xlsr.errors import CheckpointError, listing
from xlsr.interop import safe_pickle
from xlsr.interop.adapters import select_fairseq_adapter
from xlsr.interop.ctc_head import to_convention
from xlsr.interop.lfs_pointer import check_not_lfs_pointer
from xlsr.interop.native import Loaded, model_with_weights
from xlsr.interop.state_dict import without_wrapper_prefixes
from xlsr.model import Wav2Vec2Config
from xlsr.model.config import in_file_words
from xlsr.text.vocab import BLANK

log = logging.getLogger(__name__)

FINETUNED_PREFIX = "w2v_encoder.w2v_model."
_WN_G = "parametrizations.weight.original0"  # weight-norm magnitude g
_WN_V = "parametrizations.weight.original1"  # weight-norm direction v

# fairseq Wav2Vec2Model key → our Wav2Vec2Model key (full matches, first match wins).
BODY_KEY_MAP: list[tuple[str, str]] = [
    (r"mask_emb", "mask_embedding"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_encoder.conv_layers.\1.conv.\2"),
    # group_norm mode: Sequential(conv, dropout, Fp32GroupNorm, GELU) on layer 0 only
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_encoder.conv_layers.0.norm.\1"),
    # layer_norm mode: Sequential(conv, dropout, Sequential(TransposeLast, Fp32LayerNorm, TransposeLast), GELU)
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_encoder.conv_layers.\1.norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.\1"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv.conv.bias"),
    (r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)", f"encoder.pos_conv.conv.{_WN_G}"),
    (r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)", f"encoder.pos_conv.conv.{_WN_V}"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.attention_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc([12])\.(weight|bias)", r"encoder.layers.\1.feed_forward.fc\2.\3"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_norm.\2"),
    # MMS: one language's adapter, sliced out of fairseq's stacked adapter_layer.* by adapters.py
    (r"encoder\.layers\.(\d+)\.adapter\.(norm|down|up)\.(weight|bias)", r"encoder.layers.\1.adapter.\2.\3"),
]
# Pretraining heads (top level in both).
PRETRAINING_KEY_MAP: list[tuple[str, str]] = [
    (r"quantizer\.vars", "quantizer.codevectors"),
    (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"project_q\.(weight|bias)", r"project_q.\1"),
    (r"final_proj\.(weight|bias)", r"final_proj.\1"),
]
CTC_HEAD_KEY_MAP: list[tuple[str, str]] = [(r"w2v_encoder\.proj\.(weight|bias)", r"lm_head.\1")]
# fairseq's remove_pretraining_modules() drops these when fine-tuning; some files still carry them.
_DROPPED_WHEN_FINETUNED = re.compile(r"(quantizer\..*|project_q\..*|final_proj\..*)")

# fairseq Dictionary specials come first; index 0 (<s>) is the CTC blank.
FAIRSEQ_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def rename_keys(keys, table: list[tuple[str, str]], prefix: str = "") -> tuple[dict[str, str], list[str]]:
    """Map each key through the first full-matching regex of `table`; return (old→new, unmatched)."""
    compiled = [(re.compile(p), r) for p, r in table]
    mapping, unmatched = {}, []
    for key in keys:
        for pattern, repl in compiled:
            if pattern.fullmatch(key):
                mapping[key] = prefix + pattern.sub(repl, key)
                break
        else:
            unmatched.append(key)
    return mapping, unmatched


# ---------------------------------------------------------------------------- reading the file
def read_fairseq_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle a fairseq `.pt` safely and return it as plain data (tensors, dicts, lists)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    check_not_lfs_pointer(path)
    zipped = zipfile.is_zipfile(path)
    with open(path, "rb") as f:
        torch_zip = f.read(4) == b"PK\x03\x04"  # how torch.load tells its zip format from the older ones
    if not zipped and torch_zip:
        raise CheckpointError(f"{path}: not a readable torch/fairseq checkpoint (truncated or damaged: "
                              f"its zip archive has no end record)")
    _refuse_code_archives(path, torch_zip)
    if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):  # as torch reads it
        raise CheckpointError(f"{path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, and with it torch refuses the restricted "
                              f"unpickler xlsr reads fairseq files with (it runs no code from the file either: "
                              f"docs/importing.md); unset it for this command")
    try:
        # Zip-format files (torch >= 1.6) are memory-mapped: tensors are read when used, never copied.
        obj = torch.load(path, map_location="cpu", pickle_module=safe_pickle, weights_only=False, mmap=zipped)
    except safe_pickle.UnsafePickleError as exc:
        raise CheckpointError(f"{path}: {_clip(str(exc), 200)}") from None
    except RecursionError:  # nesting deeper than any config
        raise _too_deep(path) from None
    except MemoryError:  # length fields beyond the file are refused before this; this is the machine's limit
        raise CheckpointError(f"{path}: out of memory while reading the checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - whatever damaged content makes pickle, torch or numpy raise
        raise CheckpointError(f"{path}: not a readable torch/fairseq checkpoint ({_first_line(exc)})") from None
    # Only the parse above meets arbitrary damage. What follows is our own code over parsed data: it refuses what it
    # cannot use (UnsafePickleError) and anything else it raised would be a bug to see, not a damaged file.
    try:
        obj = safe_pickle.to_plain(obj)
        if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
            raise CheckpointError(f"{path}: not a fairseq checkpoint (no 'model' state dict)")
        if isinstance(obj.get("cfg"), dict):
            # A DictConfig pickled as such keeps references like "${task.normalize}" unresolved.
            obj["cfg"] = safe_pickle.resolve_interpolations(obj["cfg"])
    except safe_pickle.UnsafePickleError as exc:
        raise CheckpointError(f"{path}: {_clip(str(exc), 200)}") from None
    except RecursionError:  # a container that holds itself
        raise _too_deep(path) from None
    return obj


def _refuse_code_archives(path: Path, torch_zip: bool) -> None:
    """Refuse the two kinds of file that torch.load would not hand to our unpickler.

    With weights_only=False (which a pickle_module needs), torch.load passes a TorchScript archive (a zip holding
    constants.pkl and code/) to torch.jit.load, which runs the archive's code (its __setstate__ methods) while
    loading; and it reads a file in torch's pre-1.0 tar format by extracting its members to a temporary folder
    and opening them, following a member that is a link to a file anywhere, or a FIFO that never ends.
    Neither is a fairseq checkpoint.
    """
    if torch_zip:
        try:
            records = torch._C.PyTorchFileReader(str(path)).get_all_records()  # the reader torch.load uses
        except Exception as exc:  # noqa: BLE001 - a zip that torch's reader cannot open
            raise CheckpointError(f"{path}: not a readable torch/fairseq checkpoint ({_first_line(exc)})") from None
        if "constants.pkl" in records or any(r.startswith("code/") for r in records):
            raise CheckpointError(f"{path}: a TorchScript archive (it holds code, which xlsr never runs), not a "
                                  f"fairseq checkpoint")
        return
    try:
        with tarfile.open(path, mode="r:"):  # as torch.load tries the file
            pass
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return  # not a tar: torch.load reads it as a pickle, through safe_pickle
    raise CheckpointError(f"{path}: a tar archive (torch's pre-1.0 format, whose reader extracts it to disk), not "
                          f"a fairseq checkpoint; xlsr does not read it")


def _too_deep(path: Path) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable checkpoint (its data is nested too deeply or holds itself)")


def _first_line(exc: BaseException, limit: int = 120) -> str:
    lines = str(exc).strip().splitlines()
    return _clip(lines[0], limit) if lines else type(exc).__name__


def _clip(text: str, limit: int = 120) -> str:
    # Messages can quote the file's own data; one line should stay one readable line.
    return safe_pickle.clip(text, limit)


# ---------------------------------------------------------------------------- config
class _SpecError(ValueError):
    pass


# A CNN has a handful of layers; a spec that builds more is damaged, and `[[1] * 10**4] * 10**4` would take minutes.
MAX_SPEC_ELEMENTS = 1000


def parse_conv_feature_layers(spec: str | list) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's conv_feature_layers string ("[(512, 10, 5)] + [(512, 3, 2)] * 4 ...") safely."""
    value = spec if isinstance(spec, (list, tuple)) else _evaluate_spec("conv_feature_layers", str(spec))
    try:
        layers = [tuple(_whole(v) for v in layer) for layer in value]
    except (TypeError, ValueError, OverflowError):
        layers = []
    if not layers or any(len(t) != 3 for t in layers):
        raise _SpecError(f"conv_feature_layers={_clip(repr(spec), 80)}: not a list of (dim, kernel, stride) "
                         f"whole numbers")
    return layers


def _evaluate_spec(name: str, text: str):
    """A config string of numbers, lists and tuples joined by + and *, evaluated without running anything."""
    try:
        return _eval_list_expr(ast.parse(text, mode="eval").body)[0]
    except (SyntaxError, TypeError, ValueError, RecursionError, MemoryError) as exc:
        raise _SpecError(f"{name}={_clip(repr(text), 80)}: {_first_line(exc)}") from None


def _eval_list_expr(node: ast.AST) -> tuple[Any, int]:
    """(value, size): one per number, list and tuple in it, repeats counted; a size over MAX_SPEC_ELEMENTS is
    refused before it is built."""
    # Only literals, list/tuple displays, `+` and `*`: enough for the spec strings, nothing executable.
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value, 1
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval_list_expr(e) for e in node.elts]
        size = 1 + sum(n for _, n in items)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        (left, left_size), (right, right_size) = _eval_list_expr(node.left), _eval_list_expr(node.right)
        if isinstance(node.op, ast.Add):
            size = left_size + right_size
        elif isinstance(left, (list, tuple)) and isinstance(right, int):
            size = left_size * right
        elif isinstance(right, (list, tuple)) and isinstance(left, int):
            size = right_size * left
        else:
            size = 1  # numbers (or operands Python refuses to multiply)
    else:
        raise _SpecError(f"unsupported expression {_clip(ast.unparse(node), 40)!r} (numbers, lists, tuples, + and * only)")
    if size > MAX_SPEC_ELEMENTS:
        raise _SpecError(f"builds more than {MAX_SPEC_ELEMENTS} elements (a CNN has a handful of layers)")
    if isinstance(node, ast.List):
        return [v for v, _ in items], size
    if isinstance(node, ast.Tuple):
        return tuple(v for v, _ in items), size
    return (left + right if isinstance(node.op, ast.Add) else left * right), max(size, 1)


def _parse_tuple(value, name: str) -> tuple[float, ...]:
    if isinstance(value, str):
        value = _evaluate_spec(name, value)
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise _SpecError(f"{name}={_clip(repr(value), 80)}: not a list of numbers") from None


def model_args(ckpt: dict) -> tuple[dict, dict, dict | None]:
    """(pretraining model args, task args, fine-tuning model args or None) as plain dicts."""
    cfg = ckpt.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        model, task = cfg["model"], cfg.get("task") or {}
    elif isinstance(ckpt.get("args"), dict):  # old checkpoints: one flat argparse Namespace
        model = task = ckpt["args"]
    else:
        raise CheckpointError("no model configuration (neither cfg['model'] nor args)")
    w2v = model.get("w2v_args")
    if w2v is None:
        return model, task, None
    if isinstance(w2v, dict) and isinstance(w2v.get("model"), dict):
        return w2v["model"], w2v.get("task") or {}, model
    if isinstance(w2v, dict):  # an old Namespace as w2v_args: flat
        return w2v, w2v, model
    raise CheckpointError("fine-tuned checkpoint has no usable w2v_args (pretraining config)")


def _whole(value) -> int:
    """int(value), refusing a float that is not a whole number (int() would cut 16.7 to 16; inf, nan raise)."""
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def _value(args: dict, name: str, default, kind: type):
    """args[name] as `kind` (default when absent or None); a value of another type names the field."""
    value = args.get(name)
    if value is None:
        value = default
    what = {bool: "a boolean", int: "an integer", float: "a number"}[kind]
    if kind is bool and not isinstance(value, (bool, int)):
        raise CheckpointError(f"{name}={_clip(repr(value), 80)} is not {what}")
    try:
        return _whole(value) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past float's range as a float
        raise CheckpointError(f"{name}={_clip(repr(value), 80)} is not {what}") from None


def _pretraining_fields(m: dict, task: dict) -> dict:
    """Wav2Vec2Config fields from fairseq's pretraining model args (fairseq names, fairseq defaults)."""
    if m.get("activation_fn", "gelu") != "gelu":
        raise CheckpointError(f"activation_fn={_clip(repr(m.get('activation_fn')), 80)} is not supported "
                              f"(only gelu)")
    if _value(m, "pos_conv_depth", 1, int) != 1:
        raise CheckpointError(f"pos_conv_depth={_clip(str(m.get('pos_conv_depth')), 80)} is not supported "
                              f"(only 1)")
    mode = m.get("extractor_mode") or "default"
    if mode not in ("default", "layer_norm"):
        raise CheckpointError(f"extractor_mode={_clip(repr(mode), 80)} is not supported")
    if _value(m, "crop_seq_to_multiple", 1, int) != 1:  # fairseq drops the last CNN frames down to a multiple
        raise CheckpointError(f"crop_seq_to_multiple={_clip(str(m.get('crop_seq_to_multiple')), 80)} is not "
                              f"supported (only 1: xlsr keeps every CNN frame)")
    try:
        conv_layers = parse_conv_feature_layers(
            m.get("conv_feature_layers") or "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
        )
        latent_temp = _parse_tuple(m.get("latent_temp") or (2.0, 0.5, 0.999995), "latent_temp")
    except _SpecError as exc:  # it names the field
        raise CheckpointError(str(exc)) from None
    hidden = _value(m, "encoder_embed_dim", 768, int)
    final_dim = _value(m, "final_dim", 0, int) or hidden
    fields: dict[str, Any] = dict(
        conv_layers=conv_layers,
        extractor_mode="layer_norm" if mode == "layer_norm" else "group_norm",
        conv_bias=_value(m, "conv_bias", False, bool),
        layer_norm_first=_value(m, "layer_norm_first", False, bool),
        hidden_size=hidden,
        final_dim=final_dim,
        codevector_dim=_value(m, "latent_dim", 0, int) or final_dim,
        latent_temp=latent_temp,
        normalize_waveform=_value(task, "normalize", False, bool),
    )
    fields.update({ours: _value(m, theirs, default, int) for ours, (theirs, default) in _INTS.items()})
    fields.update({ours: _value(m, theirs, default, float) for ours, (theirs, default) in _FLOATS.items()})
    return fields


# Our field: (fairseq's pretraining name, fairseq's default).
_INTS = {"num_layers": ("encoder_layers", 12), "num_heads": ("encoder_attention_heads", 12),
         "ffn_dim": ("encoder_ffn_embed_dim", 3072), "conv_pos": ("conv_pos", 128),
         "conv_pos_groups": ("conv_pos_groups", 16), "num_codevector_groups": ("latent_groups", 2),
         "num_codevectors_per_group": ("latent_vars", 320), "num_negatives": ("num_negatives", 100),
         "cross_sample_negatives": ("cross_sample_negatives", 0), "mask_length": ("mask_length", 10),
         "mask_channel_length": ("mask_channel_length", 10)}  # fmt: skip
_FLOATS = {"feature_grad_mult": ("feature_grad_mult", 1.0), "dropout": ("dropout", 0.1),
           "attention_dropout": ("attention_dropout", 0.1), "activation_dropout": ("activation_dropout", 0.0),
           "dropout_input": ("dropout_input", 0.0), "dropout_features": ("dropout_features", 0.0),
           "layerdrop": ("encoder_layerdrop", 0.0), "logit_temp": ("logit_temp", 0.1),
           "mask_prob": ("mask_prob", 0.65), "mask_channel_prob": ("mask_channel_prob", 0.0)}  # fmt: skip
# The fields a config error names in the file's words (the rest keep "Wav2Vec2Config.", as final_dim and latent_dim,
# whose 0 stands for another field's value).
_FAIRSEQ_NAMES = {"hidden_size": "encoder_embed_dim", **{ours: theirs for ours, (theirs, _) in {**_INTS, **_FLOATS}.items()}}


# fairseq pretraining settings that change only its loss, which xlsr's pretraining does not offer:
# name → (fairseq's default, what xlsr does instead).
_UNREAD_OBJECTIVE = {
    "negatives_from_everywhere": (False, "draws distractors from the masked frames only"),
    "codebook_negatives": (0, "draws no distractors from the codebook"),
}


def unread_objective_settings(ckpt: dict) -> list[str]:
    """One note per pretraining-loss setting of the file that xlsr does not read (the weights and outputs are not
    affected; a pretraining run continued from the file trains with xlsr's loss)."""
    m = model_args(ckpt)[0]
    return [f"{name}={m[name]!r} is not read: xlsr's pretraining {ours}, so a continued pretraining run's loss "
            f"differs from fairseq's (the weights and outputs do not)"
            for name, (default, ours) in _UNREAD_OBJECTIVE.items() if m.get(name) not in (None, default)]


# The fine-tuning run's regularisation (fairseq passes these to the body as arg_overrides): ours → theirs.
_FINETUNING_OVERRIDES = {
    "dropout": float, "attention_dropout": float, "activation_dropout": float, "dropout_input": float,
    "mask_prob": float, "mask_length": int, "mask_channel_prob": float, "mask_channel_length": int,
    "layerdrop": float, "feature_grad_mult": float, "final_dropout": float,
}  # fmt: skip


def config_from_fairseq(ckpt: dict, criterion: dict | None = None):
    """Our Wav2Vec2Config from a fairseq checkpoint's config (pretraining args + fine-tuning overrides)."""
    m, task, ft = model_args(ckpt)
    fields = _pretraining_fields(m, task)
    names = dict(_FAIRSEQ_NAMES)
    if ft is not None:
        for name, kind in _FINETUNING_OVERRIDES.items():
            if ft.get(name) is not None:
                fields[name] = _value(ft, name, None, kind)
                names[name] = name  # the fine-tuning config's own name for it
        if ft.get("normalize") is not None:
            fields["normalize_waveform"] = _value(ft, "normalize", False, bool)
    weights = (criterion or {}).get("loss_weights")
    try:
        weights = _parse_tuple(weights, "loss_weights") if weights else ()
    except _SpecError:
        raise CheckpointError(f"loss_weights={_clip(repr(weights), 80)} is not a list of numbers") from None
    if weights:
        # fairseq's criterion repeats a single weight for every extra loss (diversity and feature penalty)
        fields["diversity_weight"] = weights[0]
        fields["feature_penalty_weight"] = weights[1] if len(weights) > 1 else weights[0]
    try:
        return Wav2Vec2Config(**fields)
    except (TypeError, ValueError) as exc:
        # our own message, in the file's names (a bound and its reason run past 120 characters)
        raise CheckpointError(f"config does not build a model ({in_file_words(_first_line(exc, 400), names)})") from None


# ---------------------------------------------------------------------------- dictionary
def read_fairseq_dictionary(path: str | Path) -> list[str]:
    """Tokens of a fairseq dict file (e.g. dict.ltr.txt) with the 4 specials first; <s> becomes <blank>.

    Read as fairseq's Dictionary.add_from_file reads it: lines end at a newline only (text mode: "\\r\\n" and a
    lone "\\r" count as one; U+2028, U+0085 or a form feed inside a symbol stay in it), each is
    `<symbol> <count>` with an optional ` #fairseq:overwrite`. A symbol listed twice is refused as fairseq
    refuses it; with the overwrite flag fairseq gives it a second output row, which a vocabulary of distinct
    tokens cannot hold, so that is refused too. Blank lines, which fairseq refuses, are skipped.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")  # universal newlines, as fairseq's open(f, "r")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read dictionary ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not a fairseq dictionary (not UTF-8 text)") from None
    symbols = list(FAIRSEQ_SPECIALS)
    row = {symbol: i for i, symbol in enumerate(symbols)}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip()
        if not line:
            continue
        overwrite = line.endswith(" #fairseq:overwrite")
        if overwrite:
            line = line[: -len(" #fairseq:overwrite")]
        symbol, _, count = line.rpartition(" ")
        try:
            int(count)  # fairseq's test of the count
        except ValueError:
            symbol = ""
        if not symbol:
            raise CheckpointError(f"{path}:{number}: expected '<symbol> <count>'")
        if symbol in row and not overwrite:
            raise CheckpointError(f"{path}:{number}: symbol {_clip(repr(symbol), 80)} is listed twice "
                                  f"(row {row[symbol]} has it); fairseq refuses this too")
        if symbol in row:
            raise CheckpointError(f"{path}:{number}: {_clip(repr(symbol), 80)} with #fairseq:overwrite makes a "
                                  f"second output row for it (row {row[symbol]} has it); xlsr vocabularies hold "
                                  f"each token once")
        row[symbol] = len(symbols)
        symbols.append(symbol)
    return [BLANK] + symbols[1:]


def _task_labels(ckpt: dict) -> str | None:
    """The fine-tuning task's `labels` (the dictionary's suffix: "ltr", "phn", ...), if the config names them."""
    cfg = ckpt.get("cfg")
    task = cfg.get("task") if isinstance(cfg, dict) else None
    if not isinstance(task, dict):
        # argparse-era files: one flat Namespace, where `task` is the task's name ("audio_pretraining").
        task = ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}
    labels = task.get("labels")
    return labels if isinstance(labels, str) and re.fullmatch(r"[\w.-]+", labels) else None


def _label_kind(ckpt: dict) -> str | None:
    """"chars" for letter labels (ltr), "phones" for phone labels (phn), else unknown."""
    return {"ltr": "chars", "phn": "phones"}.get(_task_labels(ckpt) or "")


def _default_dictionary(path: Path, ckpt: dict) -> Path | None:
    """dict.<labels>.txt beside the checkpoint, <labels> as its task config names them (default ltr)."""
    candidate = path.with_name(f"dict.{_task_labels(ckpt) or 'ltr'}.txt")
    return candidate if candidate.is_file() else None


# ---------------------------------------------------------------------------- the state dict
def convert_state_dict(state: dict[str, torch.Tensor], architecture: str, source) -> dict[str, torch.Tensor]:
    """Rename a fairseq state dict to our architecture's keys; unmatched keys are an error listing them."""
    if architecture == "Wav2Vec2ForCTC":
        body = {k[len(FINETUNED_PREFIX):]: v for k, v in state.items() if k.startswith(FINETUNED_PREFIX)}
        body = {k: v for k, v in body.items() if not _DROPPED_WHEN_FINETUNED.fullmatch(k)}
        heads = {k: v for k, v in state.items() if not k.startswith(FINETUNED_PREFIX)}
        body_map, bad_body = rename_keys(body, BODY_KEY_MAP, prefix="wav2vec2.")
        head_map, bad_head = rename_keys(heads, CTC_HEAD_KEY_MAP)
        bad = [FINETUNED_PREFIX + k for k in bad_body] + bad_head
        out = {body_map[k]: v for k, v in body.items() if k in body_map}
        out.update({head_map[k]: v for k, v in heads.items() if k in head_map})
    else:
        prefix = "wav2vec2." if architecture == "Wav2Vec2ForPreTraining" else ""
        body_map, unmatched = rename_keys(state, BODY_KEY_MAP, prefix=prefix)
        head_map, bad = rename_keys(unmatched, PRETRAINING_KEY_MAP if prefix else [])
        out = {new: state[old] for old, new in {**body_map, **head_map}.items()}
    if bad:
        raise CheckpointError(f"{source}: unexpected keys (not part of wav2vec 2.0): "
                              f"{listing([_clip(k, 80) for k in sorted(bad)])}")
    return out


# fairseq speech models that are not wav2vec 2.0 (their layers or objectives differ): named instead of a key listing
OTHER_FAMILIES = {"hubert": "HuBERT", "hubert_ctc": "HuBERT", "hubert_seq2seq": "HuBERT",
                  "data2vec_audio": "data2vec", "data2vec2": "data2vec 2.0", "wav2vec": "wav2vec (1.0)",
                  "wav2vec_seq2seq": "a wav2vec 2.0 sequence-to-sequence model", "wav2vec2_laser": "SpeechLASER"}


def _check_family(ckpt: dict) -> None:
    """A CheckpointError naming the model when the file holds another fairseq family than wav2vec 2.0."""
    model, _, finetuned = model_args(ckpt)
    for args in (finetuned, model):
        name = (args or {}).get("_name") or (args or {}).get("arch")
        if name in OTHER_FAMILIES:
            raise CheckpointError(f"a fairseq {OTHER_FAMILIES[name]} checkpoint (model {name!r}); xlsr reads the "
                                  f"wav2vec 2.0 family: wav2vec 2.0, XLSR-53, XLS-R, MMS ('wav2vec2', 'wav2vec_ctc')")
    layer_type = model.get("layer_type")
    if layer_type == "conformer":  # "transformer", and MMS's "trf_adp" (Transformer layers with adapters), load
        raise CheckpointError("layer_type='conformer' (wav2vec 2.0 conformer) is not supported; xlsr builds "
                              "Transformer layers")


def _criterion_args(ckpt: dict) -> dict:
    # The top-level "criterion" entry is the criterion's state dict; its settings live in the config.
    cfg = ckpt.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("criterion"), dict):
        return cfg["criterion"]
    return ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}


def _architecture(state: dict) -> str:
    if "w2v_encoder.proj.weight" in state:
        return "Wav2Vec2ForCTC"
    if any(k.startswith(FINETUNED_PREFIX) for k in state):
        raise CheckpointError("fine-tuned checkpoint without a CTC head (w2v_encoder.proj) is not supported")
    return "Wav2Vec2ForPreTraining" if "quantizer.vars" in state else "Wav2Vec2Model"


def _one_language(ckpt: dict, state: dict, target_lang: str | None, path: Path) -> tuple[dict, str | None, int]:
    """MMS: the state with `target_lang`'s adapters only (see adapters.py), the language and the adapter width."""
    m, pre_task, ft = model_args(ckpt)
    cfg = ckpt.get("cfg") if isinstance(ckpt.get("cfg"), dict) else {}
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else ckpt.get("args") or {}
    return select_fairseq_adapter(state, {**m, **(ft or {})}, {**pre_task, **task}, target_lang, path)


def load_fairseq(path: str | Path, *, dictionary: str | Path | None = None, target_lang: str | None = None) -> Loaded:
    """Rebuild a fairseq wav2vec 2.0 checkpoint (and its CTC dictionary, if given or beside it) as our model.

    For MMS files with per-language adapters, `target_lang` picks the language (see adapters.py).
    """
    path = Path(path)
    ckpt = read_fairseq_checkpoint(path)
    # a model saved through torch.compile or DDP has its wrapper's prefix on every key
    state = without_wrapper_prefixes({k: v for k, v in ckpt["model"].items() if isinstance(v, torch.Tensor)})
    try:
        _check_family(ckpt)
        architecture = _architecture(state)
        cfg = config_from_fairseq(ckpt, _criterion_args(ckpt))
        state, lang, adapter_dim = _one_language(ckpt, state, target_lang, path)
        if dictionary is not None and architecture != "Wav2Vec2ForCTC":
            raise CheckpointError(f"{path}: has no CTC head (w2v_encoder.proj); dictionary={str(dictionary)!r} "
                                  f"(--dict) does not apply")
        if architecture == "Wav2Vec2ForPreTraining":  # the file a pretraining run would continue
            for note in unread_objective_settings(ckpt):
                log.warning("%s: %s", path, note)
    except CheckpointError as exc:
        raise CheckpointError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
    if adapter_dim:
        cfg.adapter_attn_dim = adapter_dim
    if architecture == "Wav2Vec2Model" and any(k.startswith(("project_q.", "final_proj.")) for k in state):
        raise CheckpointError(f"{path}: pretrained without a quantizer (quantize_targets=False) is not supported")
    ours = convert_state_dict(state, architecture, path)
    filled = []
    feature_projection = ("wav2vec2." if architecture != "Wav2Vec2Model" else "") + "feature_projection"
    if f"{feature_projection}.weight" not in ours and cfg.conv_dim == cfg.hidden_size:
        # fairseq has no post_extract_proj when the CNN width equals D; ours always does: identity.
        ours[f"{feature_projection}.weight"] = torch.eye(cfg.hidden_size)
        ours[f"{feature_projection}.bias"] = torch.zeros(cfg.hidden_size)
        filled.append(feature_projection)
    vocab = None
    vocab_size = None
    if architecture == "Wav2Vec2ForCTC":
        vocab_size = state["w2v_encoder.proj.weight"].shape[0]
        dict_path = Path(dictionary) if dictionary is not None else _default_dictionary(path, ckpt)
        if dict_path is not None:
            vocab = read_fairseq_dictionary(dict_path)
            if len(vocab) != vocab_size:
                raise CheckpointError(
                    f"{dict_path}: dictionary gives {len(vocab)} tokens but {path} has {vocab_size} output rows"
                )
    metadata: dict[str, Any] = {"source": str(path), **({"target_lang": lang} if lang else {})}
    if vocab is not None and _label_kind(ckpt):
        metadata["labels"] = _label_kind(ckpt)
    if filled:
        metadata["identity_filled"] = filled
    if architecture == "Wav2Vec2ForCTC" and vocab is not None:
        # Our convention: <blank> (fairseq's <s>) at row 0, then <unk> (fairseq's index 3).
        vocab, order = to_convention(ours, vocab, 0, FAIRSEQ_SPECIALS.index("<unk>"))
        metadata["head_rows_from"] = order
    model = model_with_weights(architecture, cfg, vocab_size, ours, path)
    return Loaded(model, cfg, vocab, "fairseq", metadata)
