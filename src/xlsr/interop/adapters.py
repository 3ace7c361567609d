"""MMS per-language adapters: choosing one language from a Hugging Face MMS directory or a fairseq MMS file.

Hugging Face (as facebook/mms-1b-all is laid out): config.json sets adapter_attn_dim; model.safetensors
holds the base model with one language's adapters and head (tokenizer_config.json's target_lang, else
"eng", transformers' default); adapter.<lang>.safetensors (or adapter.<lang>.bin, a torch pickle) holds
another language's adapter layers and lm_head; vocab.json maps each language to its own token→id table.
fairseq (layer_type "trf_adp"): every adapted block stacks all languages' adapters in one tensor per
weight (adapter_layer.W_a [n, a, D], W_b [n, D, a], b_a [n, a], b_b [n, D], ln_W / ln_b [n, D]); index i
is one language, named by the task's multi_corpus_keys when there is more than one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from xlsr.errors import CheckpointError, listing
from xlsr.interop.native import read_json, read_safetensors

ADAPTER_FILE = "adapter.{}.safetensors"
ADAPTER_BIN_FILE = "adapter.{}.bin"  # transformers' load_adapter falls back to this one
# The language of an MMS base's own adapters and head when tokenizer_config.json names none: transformers'
# Wav2Vec2ForCTC uses them unchanged when no target_lang is given ("By default `target_lang` is set to 'eng'").
DEFAULT_BASE_LANGUAGE = "eng"
_HF_ADAPTER_KEY = re.compile(r"wav2vec2\.encoder\.layers\.\d+\.adapter_layer\.(norm|linear_1|linear_2)\.(weight|bias)")
_HF_HEAD_KEYS = ("lm_head.weight", "lm_head.bias")


def _languages_line(languages: list[str]) -> str:
    return ", ".join(languages) if languages else "none"


# ---------------------------------------------------------------------------- Hugging Face
def hf_languages(dir: Path) -> tuple[list[str], Path]:
    """(languages an MMS directory offers, the file that says so): a per-language vocab.json, else adapter files."""
    vocab_path = dir / "vocab.json"
    by_language = _vocab_by_language(vocab_path) if vocab_path.is_file() else None
    if by_language is not None:
        return sorted(by_language), vocab_path
    files = {p.name[len("adapter."):-len(".safetensors")] for p in dir.glob(ADAPTER_FILE.format("*"))}
    files |= {p.name[len("adapter."):-len(".bin")] for p in dir.glob(ADAPTER_BIN_FILE.format("*"))}
    return sorted(files), dir


def _vocab_by_language(vocab_path: Path) -> dict[str, dict] | None:
    """vocab.json's token→id table of each language when it is keyed by language (an object of objects), None when it
    is one token→id table; one line naming the entries that are not tables when only some are."""
    vocab = read_json(vocab_path)
    if not any(isinstance(v, dict) for v in vocab.values()):
        return None
    odd = [k for k, v in vocab.items() if not isinstance(v, dict)]
    if odd:
        more = f" (and {len(odd) - 1} more entries: {listing(odd[1:])})" if len(odd) > 1 else ""
        raise CheckpointError(f"{vocab_path}: keyed by language, but its entry for language {odd[0]!r} is "
                              f"{_json_kind(vocab[odd[0]])}, not an object of token ids{more}")
    return vocab


def _json_kind(value) -> str:
    for kind, name in ((bool, "true/false"), (int | float, "a number"), (str, "a string"), (list, "a list")):
        if isinstance(value, kind):
            return name
    return "null"


def hf_base_language(dir: Path) -> str:
    """The language of the adapters and head in an MMS directory's base weights: tokenizer_config.json's
    target_lang, else transformers' default "eng"."""
    path = dir / "tokenizer_config.json"
    lang = read_json(path).get("target_lang") if path.is_file() else None
    return lang if isinstance(lang, str) and lang else DEFAULT_BASE_LANGUAGE


def hf_language(dir: Path, target_lang: str | None) -> str | None:
    """The language to load from an HF directory: `target_lang` if it offers it; without one, the only language it
    offers when that is the base's own (transformers then uses the base weights as they are) or has its adapter file
    (an export of phone labels names no base language: it has no tokenizer_config.json); None when it offers none.
    Otherwise one line listing the languages it offers."""
    languages, named_in = hf_languages(dir)
    if target_lang is None and not languages:
        return None
    if target_lang is None and len(languages) == 1 and (
            languages[0] == hf_base_language(dir) or (dir / ADAPTER_FILE.format(languages[0])).is_file()
            or (dir / ADAPTER_BIN_FILE.format(languages[0])).is_file()):
        return languages[0]
    return choose_language(named_in, languages, target_lang)


def choose_language(source: Path, languages: list[str], target_lang: str | None) -> str:
    """`target_lang` if `source` offers it; otherwise one line listing the languages it does offer."""
    if target_lang is None:
        held = "1 language; choose it" if len(languages) == 1 else f"{len(languages)} languages; choose one"
        raise CheckpointError(f"{source}: holds {held} with target_lang (--target-lang): {_languages_line(languages)}")
    if target_lang not in languages:
        raise CheckpointError(f"{source}: no language {target_lang!r}; available: {_languages_line(languages)}")
    return target_lang


def language_vocab(vocab_path: Path, target_lang: str | None) -> dict:
    """The token→id table of vocab.json, or of its `target_lang` entry when it is keyed by language."""
    by_language = _vocab_by_language(vocab_path)
    if by_language is None:
        return read_json(vocab_path)
    if target_lang not in by_language:
        raise CheckpointError(f"{vocab_path}: no vocabulary for language {target_lang!r}; "
                              f"available: {_languages_line(sorted(by_language))}")
    return by_language[target_lang]


def with_hf_adapter(dir: Path, state: dict[str, torch.Tensor], lang: str,
                    read_torch_weights: Callable[[Path], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """`state` (HF names) with the adapters and head of adapter.<lang>.safetensors, else adapter.<lang>.bin (read
    by `read_torch_weights`), as transformers' load_adapter; without either, `state` itself only when `lang` is the
    base's own language (hf_base_language), otherwise one line naming the files looked for."""
    path = dir / ADAPTER_FILE.format(lang)
    bin_path = dir / ADAPTER_BIN_FILE.format(lang)
    if path.is_file():
        adapter = read_safetensors(path)
    elif bin_path.is_file():
        path, adapter = bin_path, read_torch_weights(bin_path)
    elif lang == hf_base_language(dir):
        return state  # the base weights are this language's (mms-1b-all's model.safetensors is English)
    else:
        raise CheckpointError(f"{path}: file not found (nor {bin_path.name}); the base weights hold the adapters "
                              f"and head of {hf_base_language(dir)!r}, not {lang!r}")
    expected = {k for k in state if _HF_ADAPTER_KEY.fullmatch(k)} | {k for k in _HF_HEAD_KEYS if k in state}
    if not expected:
        raise CheckpointError(f"{path}: the base model in {dir} has no adapter layers (adapter_attn_dim unset)")
    problems = []
    if set(adapter) - expected:
        problems.append(f"unexpected keys: {listing(sorted(set(adapter) - expected))}")
    if expected - set(adapter):
        problems.append(f"missing keys: {listing(sorted(expected - set(adapter)))}")
    wrong = [f"{k} {tuple(v.shape)} vs base {tuple(state[k].shape)}" for k, v in sorted(adapter.items())
             if k in state and not _fits(k, v, state[k])]  # fmt: skip
    if wrong:
        problems.append(f"shapes contradict the base model: {listing(wrong)}")
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))
    return {**state, **adapter}


def _fits(key: str, value: torch.Tensor, base: torch.Tensor) -> bool:
    # A language's head has its own number of rows (its vocabulary); everything else matches the base.
    if key == "lm_head.weight":
        return value.dim() == 2 and value.shape[1] == base.shape[1]
    if key == "lm_head.bias":
        return value.dim() == 1
    return value.shape == base.shape


# ---------------------------------------------------------------------------- fairseq
_FAIRSEQ_ADAPTER = re.compile(r"(.*encoder\.layers\.\d+\.adapter_layer\.)(W_a|W_b|b_a|b_b|ln_W|ln_b)")
# fairseq's stacked adapter weight → the per-language name our key table maps.
_FAIRSEQ_ONE = {"W_a": "down.weight", "b_a": "down.bias", "W_b": "up.weight", "b_b": "up.bias",
                "ln_W": "norm.weight", "ln_b": "norm.bias"}  # fmt: skip


def fairseq_adapter_languages(task: dict, count: int) -> list[str] | None:
    """The languages of a fairseq file's `count` stacked adapters, in index order, or None if it names none."""
    keys = task.get("multi_corpus_keys")
    names = [k.strip() for k in keys.split(",")] if isinstance(keys, str) else None
    return names if names and len(names) == count else None


def select_fairseq_adapter(state: dict[str, torch.Tensor], model_args: dict, task: dict,
                           target_lang: str | None, source: Path) -> tuple[dict[str, torch.Tensor], str | None, int]:
    """(state with one language's adapter per block, that language or None, adapter width; 0 without adapters)."""
    stacked = {k: v for k, v in state.items() if _FAIRSEQ_ADAPTER.fullmatch(k)}
    blocks: dict[str, set[str]] = {}
    for key in stacked:
        m = _FAIRSEQ_ADAPTER.fullmatch(key)
        blocks.setdefault(m[1], set()).add(m[2])
    if any(names != set(_FAIRSEQ_ONE) for names in blocks.values()):
        stacked = {}  # not a whole adapter: the strict key check lists these keys as unexpected
    if not stacked:
        if target_lang is not None:
            raise CheckpointError(f"{source}: has no per-language adapters; target_lang={target_lang!r} does not apply")
        return state, None, 0
    if (model_args.get("adp_act_fn") or "relu") != "relu":
        raise CheckpointError(f"{source}: adp_act_fn={model_args.get('adp_act_fn')!r} is not supported (only relu)")
    if str(model_args.get("adp_trf_idx") or "all") != "all":
        raise CheckpointError(f"{source}: adp_trf_idx={model_args.get('adp_trf_idx')!r} is not supported "
                              f"(only 'all': an adapter in every block)")
    count = next(iter(stacked.values())).shape[0]
    languages = fairseq_adapter_languages(task, count)
    if count == 1 and (target_lang is None or languages is None):
        index, lang = 0, (languages or [None])[0]
    elif languages is None:
        raise CheckpointError(f"{source}: holds {count} adapters per block but its task names no languages "
                              f"(multi_corpus_keys); no way to pick target_lang={target_lang!r}")
    else:
        lang = choose_language(source, languages, target_lang)
        index = languages.index(lang)
    out = {k: v for k, v in state.items() if k not in stacked}
    for key, value in stacked.items():
        m = _FAIRSEQ_ADAPTER.fullmatch(key)
        out[m[1].replace("adapter_layer.", "adapter.") + _FAIRSEQ_ONE[m[2]]] = value[index]
    return out, lang, next(v for k, v in stacked.items() if k.endswith("b_a")).shape[1]


# ---------------------------------------------------------------------------- a new language (MMS's recipe)
def adapter_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters MMS trains for a language: every block's adapter and the CTC head; the rest stays frozen."""
    return [p for name, p in model.named_parameters() if ".adapter." in name or name.startswith("lm_head.")]


def init_language(model: torch.nn.Module, vocab_size: int, generator: torch.Generator | None = None) -> None:
    """Fresh adapters and a fresh `vocab_size`-row head for a new language; base weights frozen (requires_grad off)."""
    cfg = model.config
    if not cfg.adapter_attn_dim or not hasattr(model, "lm_head"):
        raise CheckpointError("init_language: needs a CTC model with MMS adapters (adapter_attn_dim set)")
    head = torch.nn.Linear(cfg.hidden_size, int(vocab_size))
    model.lm_head = head
    model.vocab_size = int(vocab_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.requires_grad_(".adapter." in name or name.startswith("lm_head."))
            if not p.requires_grad:
                continue
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:  # fairseq's init_bert_params, as the base's Linear layers got
                p.normal_(0.0, 0.02, generator=generator)
