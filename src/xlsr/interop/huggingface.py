"""Hugging Face transformers wav2vec2 directories: import to our model and export from it.

An HF directory holds config.json (model_type "wav2vec2"), weights (model.safetensors or
pytorch_model.bin, possibly sharded with an *.index.json), and for CTC models a tokenizer
(vocab.json, tokenizer_config.json, special_tokens_map.json) and preprocessor_config.json.
transformers is not needed for either direction: hf_keys.py's table is the whole weight mapping
(reference/checkpoints.md §7.2), hf_config.py maps config.json and hf_tokenizer.py the tokenizer files.
In HF the CTC blank is the pad token; ours is `<blank>` at 0.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xlsr.errors import CheckpointError, listing
from xlsr.interop.adapter_export import export_adapter
from xlsr.interop.adapters import hf_language, with_hf_adapter
from xlsr.interop.ctc_head import to_convention, with_unk_row
from xlsr.interop.hf_config import (
    config_from_hf,
    config_to_hf,
    hf_has_mask_embedding,
    ignored_ctc_loss_fields,
    keeps_xlsr_record,
)
from xlsr.interop.hf_keys import HF_PREFIX, key_table, rename, with_current_weight_norm_names
from xlsr.interop.hf_tokenizer import hf_preprocessor_config, hf_tokenizer_files, read_hf_vocab
from xlsr.interop.lfs_pointer import check_not_lfs_pointer
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
from xlsr.interop.safe_pickle import clip
from xlsr.interop.safetensors_file import write_safetensors
from xlsr.interop.state_dict import without_wrapper_prefixes
from xlsr.jsonl import parse_json
from xlsr.text.vocab import UNK

log = logging.getLogger(__name__)


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
    check_not_lfs_pointer(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError)
        raise CheckpointError(f"{path}: unreadable or unsafe torch weights ({_torch_load_reason(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return state


def _torch_load_reason(exc: BaseException) -> str:
    """What torch.load(weights_only=True) found wrong, in one line. Its refusal opens with advice to load the file
    with weights_only=False (which runs code from it) and names the cause after "WeightsUnpickler error:"."""
    text = str(exc).strip()
    cause = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    line = cause[1].split(" Please use ")[0] if cause else (text.splitlines() or [type(exc).__name__])[0]
    return clip(line, 160)


def is_hf_dir(path: str | Path) -> bool:
    """Whether `path` is a directory with an HF wav2vec2 config.json."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return parse_json(cfg.read_text()).get("model_type") == "wav2vec2"
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


def import_hf(dir: str | Path, *, target_lang: str | None = None, encoder_of_classifier: bool = False) -> Loaded:
    """Rebuild an HF wav2vec2 directory (Model, ForPreTraining or ForCTC) as our model, with its vocabulary.

    For an MMS directory with per-language adapters, `target_lang` picks the language's adapters, head
    and vocabulary (as transformers' load_adapter does); without it, or with one it lacks, one line
    lists the languages it has.
    A classification model (CLASSIFIERS, as config.json's `architectures` names it) is refused in one line naming
    it; with `encoder_of_classifier` (a training run's --init) its encoder is read as a Wav2Vec2Model, the head
    left out with a warning.
    """
    dir = Path(dir)
    cfg_path = dir / "config.json"
    hf = read_json(cfg_path)
    classifier = _classifier(hf, cfg_path, allowed=encoder_of_classifier)
    state, weights_path, lang = _read_hf_state(dir, target_lang)
    if classifier is not None:
        hf, state = _encoder_of(classifier, hf, state, cfg_path)
    architecture = _architecture_from_keys(state)
    cfg = config_from_hf(hf, cfg_path, architecture=architecture, normalize=_do_normalize(dir))
    _check_conv_bias(hf, cfg.conv_bias, state, cfg_path, weights_path)
    prefixed = architecture != "Wav2Vec2Model"
    ours, unmatched = rename(state, key_table("from_hf", prefixed, adapters=bool(cfg.adapter_attn_dim)))
    if unmatched:
        raise CheckpointError(f"{weights_path}: unexpected keys (not supported): {listing(sorted(unmatched))}")
    metadata: dict[str, Any] = {"source": str(dir), **({"target_lang": lang} if lang else {})}
    if architecture == "Wav2Vec2ForCTC":
        ignored = ignored_ctc_loss_fields(hf)
        if ignored:
            # Our CTC loss is always the per-target-length mean with zero_infinity (model/ctc.py); the directory's
            # own settings are kept in the metadata, and said (at info level: transformers' defaults are sum/False,
            # so most published CTC directories differ, and a warning on every transcription would be noise).
            metadata["ignored_hf_config"] = ignored
            log.info("%s: %s not applied; xlsr's CTC loss is reduction='mean' with zero_infinity=True", cfg_path,
                        ", ".join(f"{k}={v!r}" for k, v in ignored.items()))
    mask_key = (HF_PREFIX if prefixed else "") + "mask_embedding"
    if mask_key not in ours and not hf_has_mask_embedding(hf):
        # transformers omits masked_spec_embed when no masking is configured; fairseq's init is U[0, 1).
        ours[mask_key] = torch.rand(cfg.hidden_size, generator=torch.Generator().manual_seed(0))
        metadata["initialized"] = [mask_key]
    vocab_size = None
    vocab = None
    if architecture == "Wav2Vec2ForCTC":
        vocab = _ctc_vocab(dir, hf, ours, lang, metadata)
        vocab_size = ours["lm_head.weight"].shape[0]
    in_file = _hf_name(key_table("to_hf", prefixed, adapters=bool(cfg.adapter_attn_dim)))
    model = model_with_weights(architecture, cfg, vocab_size, ours, weights_path, names=in_file)
    return Loaded(model, cfg, vocab, "hf", metadata)


# transformers' classification heads on the wav2vec2 encoder: xlsr has no model for them, and their encoder is a
# Wav2Vec2Model under the `wav2vec2.` prefix, the head's weights beside it (projector, classifier; for the x-vector
# its TDNN layers, its own feature_extractor and objective; layer_weights with use_weighted_layer_sum)
CLASSIFIERS = ("Wav2Vec2ForSequenceClassification", "Wav2Vec2ForAudioFrameClassification", "Wav2Vec2ForXVector")


def _classifier(hf: dict, cfg_path: Path, *, allowed: bool) -> str | None:
    """The classification architecture config.json names (None for any other); refused in one line unless
    `allowed`."""
    named = hf.get("architectures")
    found = next((a for a in named if a in CLASSIFIERS), None) if isinstance(named, list) else None
    if found is not None and not allowed:
        raise CheckpointError(f"{cfg_path}: architectures names {found}, a classification model; xlsr reads wav2vec2 "
                              f"pretraining, encoder and CTC models (Wav2Vec2ForPreTraining, Wav2Vec2Model, "
                              f"Wav2Vec2ForCTC); its encoder can be taken as the --init of xlsr finetune or pretrain")
    return found


def _encoder_of(classifier: str, hf: dict, state: dict[str, torch.Tensor],
                cfg_path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A classification model's config and weights as those of its encoder alone (a Wav2Vec2Model's), said."""
    head = sorted({key.split(".")[0] for key in state if not key.startswith(HF_PREFIX)})
    log.warning("%s: a %s: its encoder is taken, its classification head (%s) left out", cfg_path, classifier,
                ", ".join(head) or "no weights")
    # use_weighted_layer_sum says how the head mixes the encoder's layers; the encoder computes the same either way
    hf = {k: v for k, v in hf.items() if k != "use_weighted_layer_sum"}
    return hf, {key[len(HF_PREFIX):]: v for key, v in state.items() if key.startswith(HF_PREFIX)}


def keeps_xlsr_settings(dir: str | Path, architecture: str) -> bool:
    """Whether `import_hf(dir)` took the model's training settings from xlsr's own record in config.json (a folder
    `export_hf` wrote, its masking keys as written), not from transformers' keys, which hold fine-tuning values."""
    return keeps_xlsr_record(read_json(Path(dir) / "config.json"), architecture)


_CONV_BIAS = re.compile(r"(?:wav2vec2\.)?feature_extractor\.conv_layers\.\d+\.conv\.bias")


def _check_conv_bias(hf: dict, conv_bias: bool, state: dict, cfg_path: Path, weights_path: Path) -> None:
    """One line when config.json's conv_bias contradicts the weights (which otherwise fail as missing or unexpected
    keys, naming neither the field nor the cause)."""
    held = any(_CONV_BIAS.fullmatch(key) for key in state)
    if held != conv_bias:
        said = json.dumps(conv_bias) + ("" if hf.get("conv_bias") is not None else " (absent: transformers' default)")
        raise CheckpointError(f"{cfg_path}: conv_bias={said} disagrees with the weights in {weights_path.name}, "
                              f"which hold {'' if held else 'no '}conv biases")


def _hf_name(table) -> Callable[[str], str]:
    """Our key -> the file's name for it, so that a loading error lists the keys as the file has them."""

    def name(key: str) -> str:
        renamed, _ = rename({key: None}, table)
        return next(iter(renamed), key)

    return name


def _do_normalize(dir: Path) -> bool | None:
    """preprocessor_config.json's do_normalize; transformers' default True when the file lacks the key
    (Wav2Vec2FeatureExtractor(do_normalize=True)). None without the file: config_from_hf then falls back to
    the convention of the CNN type, there being no feature extractor to follow."""
    path = dir / "preprocessor_config.json"
    if not path.is_file():
        return None
    value = read_json(path).get("do_normalize", True)
    if not isinstance(value, bool):
        raise CheckpointError(f"{path}: do_normalize={value!r}, expected true or false")
    return value


def _read_hf_state(dir: Path, target_lang: str | None) -> tuple[dict[str, torch.Tensor], Path, str | None]:
    """The directory's tensors with the chosen MMS language's adapters in and weight norm under today's names."""
    state, weights_path = read_hf_weights(dir)
    state = without_wrapper_prefixes(state)  # weights saved through torch.compile or DDP: their prefix on every key
    lang = hf_language(dir, target_lang)
    if lang is not None:
        state = with_hf_adapter(dir, state, lang, _read_torch_weights)
    return with_current_weight_norm_names(state), weights_path, lang


def _ctc_vocab(dir: Path, hf: dict, ours: dict[str, torch.Tensor], lang: str | None, metadata: dict) -> list | None:
    """The CTC vocabulary in our convention, moving lm_head rows to match; notes row order and labels in metadata."""
    vocab_size = ours["lm_head.weight"].shape[0]
    pad_id = hf.get("pad_token_id")
    pad_id = 0 if pad_id is None else pad_id  # transformers' default
    if not isinstance(pad_id, int) or isinstance(pad_id, bool):
        raise CheckpointError(f"{dir / 'config.json'}: pad_token_id={pad_id!r}, expected an integer")
    if not 0 <= pad_id < vocab_size:
        raise CheckpointError(f"{dir / 'config.json'}: pad_token_id={pad_id} outside the {vocab_size}-row lm_head")
    found = read_hf_vocab(dir, vocab_size, lang)
    vocab, unk_id = found if found is not None else (None, None)
    if vocab is not None and unk_id is None and UNK in vocab and vocab.index(UNK) != pad_id:
        unk_id = vocab.index(UNK)  # the tokenizer names an unk it lacks; the vocabulary has ours
    if unk_id == pad_id:  # unk_token is the pad token: transformers encodes unknown text as the blank; no unk row
        unk_id = None
    # Our convention: blank (HF's pad) at row 0, <unk> at row 1; rows move with their tokens.
    vocab, order = to_convention(ours, vocab, pad_id, unk_id)
    if order is not None:
        metadata["head_rows_from"] = order
    if vocab is not None and unk_id is None:  # no unk token at all: a row for it that is never predicted
        vocab = with_unk_row(ours, vocab)
        metadata["added_rows"] = [UNK]
    tokenizer_class = (read_json(dir / "tokenizer_config.json").get("tokenizer_class")
                       if (dir / "tokenizer_config.json").is_file() else None)  # fmt: skip
    if vocab is not None and tokenizer_class in _LABELS_OF_TOKENIZER:
        metadata["labels"] = _LABELS_OF_TOKENIZER[tokenizer_class]
    return vocab


def export_hf(model: torch.nn.Module, dir: str | Path, vocab=None, *, kind: str | None = None,
              target_lang: str | None = None) -> Path:
    """Write `model` as an HF directory that transformers' from_pretrained loads (atomically).

    `vocab` (a Vocabulary or token list) adds the CTC tokenizer files; `kind` ("phones"/"chars")
    picks the tokenizer, by default the Vocabulary's kind or a guess from the symbols. `target_lang` names the
    language of a model's MMS adapters and head: a CTC model with adapters and a vocabulary then gets the MMS layout
    (_write_language), which transformers loads with target_lang=LANG, with load_adapter(LANG) and without either.
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
    hf_state, unmatched = rename(state, key_table("to_hf", prefixed, adapters=bool(cfg.adapter_attn_dim)))
    if unmatched:
        raise CheckpointError(f"{dir}: no HF name for {listing(sorted(unmatched))}")
    if not hf_has_mask_embedding(hf_config):
        hf_state.pop((HF_PREFIX if prefixed else "") + "masked_spec_embed", None)
    files = {"config.json": hf_config, "preprocessor_config.json": hf_preprocessor_config(cfg)}
    kind = kind or getattr(vocab, "kind", None)
    tokenizer = hf_tokenizer_files(tokens, kind) if tokens is not None else None
    # Phone labels as the flat layout's tokenizer takes them: `kind`, else a guess from the symbols (a checkpoint
    # whose labels nothing names, such as a phone RUN/adapter/ read back, which has no tokenizer files).
    phones = tokenizer is not None and _LABELS_OF_TOKENIZER.get(
        tokenizer["tokenizer_config.json"]["tokenizer_class"]) == "phones"
    # Without a vocabulary there is no vocab.json to key by language: the flat layout, as for any CTC model.
    mms = bool(target_lang and cfg.adapter_attn_dim and vocab_size is not None and tokens is not None)
    if tokenizer is not None and not mms:
        files.update(tokenizer)

    def write(tmp: Path) -> None:
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        write_safetensors(tmp / "model.safetensors", hf_state, metadata={"format": "pt"})
        if mms:
            _write_language(tmp, model, target_lang, tokens, phones=phones)

    if mms and phones:
        # Wav2Vec2CTCTokenizer, the one that reads a vocab.json keyed by language, splits text into characters: it
        # would encode a phone string's spaces as <unk> and join decoded phones. transformers' phoneme tokenizer
        # reads no per-language vocabulary, so no tokenizer files are written for phone labels.
        log.warning("%s: phone labels: the adapter and vocab.json are written, no tokenizer files (transformers has "
                    "no phone tokenizer that reads a vocab.json keyed by language)", dir)
    return write_atomic_dir(dir, write)


def _write_language(dir: Path, model: torch.nn.Module, lang: str, tokens: list[str], *, phones: bool) -> None:
    """The MMS layout, as facebook/mms-1b-all has it, beside the base (config.json, model.safetensors: this language's
    adapters and head, which transformers uses without target_lang): adapter.<lang>.safetensors, vocab.json keyed by
    language and tokenizer files naming it (tokenizer_config.json's target_lang, the base's language); for `phones`
    no tokenizer files (see export_hf)."""
    export_adapter(model, dir, lang, tokens)
    if phones:
        return
    files = hf_tokenizer_files(tokens, "chars")
    files["tokenizer_config.json"]["target_lang"] = lang
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (dir / name).write_text(json.dumps(files[name], indent=2, ensure_ascii=False) + "\n")
