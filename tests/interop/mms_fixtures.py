"""A tiny random-weight MMS directory laid out as facebook/mms-1b-all is (built offline, nothing downloaded).

Base weights with English adapters and head in model.safetensors, adapter.fra.safetensors for French,
vocab.json keyed by language. Shared by the interop, decoding and fine-tuning tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hf_fixtures import make_hf, transformers
from safetensors.torch import save_file

ADAPTER_DIM = 8
ENG = ["<pad>", "<s>", "</s>", "<unk>", "|", "e", "t", "a", "o", "i", "n"]  # 11 rows, as hf_fixtures
FRA = ["<pad>", "<s>", "</s>", "<unk>", "|", "é", "r", "u", "s"]  # 9 rows: a head of its own size

__all__ = ["ADAPTER_DIM", "ENG", "FRA", "adapter_weights", "hf_order", "transformers", "write_mms_dir"]


def adapter_weights(hf, vocab_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Random adapters and head for another language, under transformers' names (its _get_adapters)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in hf.named_parameters():
        if ".adapter_layer." in name:
            out[name] = (1.0 if name.endswith("norm.weight") else 0.0) + torch.randn(p.shape, generator=g) * 0.3
    hidden = hf.config.hidden_size
    out["lm_head.weight"] = torch.randn(vocab_size, hidden, generator=g) / hidden**0.5
    out["lm_head.bias"] = torch.randn(vocab_size, generator=g) * 0.1
    return out


def write_mms_dir(path: Path, seed: int = 60) -> Path:
    """The MMS directory at `path`: languages eng (the base's) and fra (an adapter file)."""
    hf = make_hf("Wav2Vec2ForCTC", "xlsr_like", seed=seed, adapter_attn_dim=ADAPTER_DIM)
    hf.save_pretrained(path)
    save_file(adapter_weights(hf, len(FRA), seed=seed + 1), str(path / "adapter.fra.safetensors"))
    vocab = {"eng": {t: i for i, t in enumerate(ENG)}, "fra": {t: i for i, t in enumerate(FRA)}}
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "tokenizer_config.json").write_text(json.dumps({"unk_token": "<unk>", "pad_token": "<pad>",
                                                            "target_lang": "eng"}))  # fmt: skip
    return path


def hf_order(tokens: list[str]) -> list[int]:
    """Source row of each of our rows: blank (HF's pad, id 0), <unk>, then the rest in order."""
    unk = tokens.index("<unk>")
    return [0, unk] + [i for i in range(1, len(tokens)) if i != unk]
