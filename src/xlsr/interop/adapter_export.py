"""Export one language's MMS adapters and CTC head into a Hugging Face MMS folder (the inverse of loading them).

Apart from adapters.py because it writes HF files with hf_keys.py's key table, while adapters.py only reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlsr.atomic import write_file, write_json
from xlsr.errors import CheckpointError
from xlsr.interop.adapters import ADAPTER_FILE
from xlsr.interop.hf_keys import HF_PREFIX, key_table, rename
from xlsr.interop.hf_tokenizer import hf_tokenizer_files
from xlsr.interop.native import model_config, read_json, vocab_tokens
from xlsr.interop.safetensors_file import write_safetensors


def export_adapter(model: torch.nn.Module, dir: str | Path, lang: str, vocab) -> Path:
    """Write `lang`'s adapters and head as dir/adapter.<lang>.safetensors and its tokens into dir/vocab.json.

    `dir` is an HF MMS directory whose base has the same shape (transformers' load_adapter(lang) then
    loads it). Each file is written whole under a temporary name and then renamed.
    """
    dir, cfg = Path(dir), model_config(model)
    base = read_json(dir / "config.json")
    for ours, theirs in (("adapter_attn_dim", "adapter_attn_dim"), ("hidden_size", "hidden_size"),
                         ("num_layers", "num_hidden_layers")):  # fmt: skip
        if getattr(cfg, ours) != base.get(theirs):
            raise CheckpointError(f"{dir / 'config.json'}: {theirs}={base.get(theirs)!r} but the model has "
                                  f"{getattr(cfg, ours)!r}; its adapters do not fit this base")
    tokens = vocab_tokens(vocab)
    rows = model.lm_head.weight.shape[0]
    if tokens is None or len(tokens) != rows:
        raise CheckpointError(f"{dir}: vocabulary of {len(tokens or [])} tokens for a {rows}-row head")
    state = {k: v.detach() for k, v in model.state_dict().items() if ".adapter." in k or k.startswith("lm_head.")}
    hf_state, unmatched = rename(state, key_table("to_hf", prefixed=True, adapters=True))
    assert not unmatched and all(k.startswith((HF_PREFIX, "lm_head.")) for k in hf_state), unmatched
    vocab_path = dir / "vocab.json"
    by_language = read_json(vocab_path) if vocab_path.is_file() else {}
    if by_language and not all(isinstance(v, dict) for v in by_language.values()):
        raise CheckpointError(f"{vocab_path}: not keyed by language; cannot add {lang!r} to it")
    by_language[lang] = hf_tokenizer_files(tokens)["vocab.json"]
    adapter_path = dir / ADAPTER_FILE.format(lang)
    write_file(adapter_path, lambda tmp: write_safetensors(tmp, hf_state, metadata={"format": "pt"}))
    write_json(vocab_path, by_language, indent=1)
    return adapter_path

