"""MMS adapter fine-tuning (`train_only="adapters"`): a language's adapters and CTC head train, the base stays fixed.

MMS adds a language by training only the bottleneck adapter after every Transformer block and a head of the
language's own vocabulary (~2M parameters for MMS-1B); the rest of the model, shared by all languages, never
changes. `target_lang` is a language the `--init` checkpoint has: its adapters and head continue training. A
new one: the checkpoint is loaded with its base's own language, else its first listed one
(`init_model.starting_language`), and the adapters and head start afresh (`adapters.init_language`).

At the end of the run (a stopped one and a re-run of a finished one too), RUN/adapter/ is written by rank 0 from
the run's best (else last) checkpoint, while the run still holds its folder's lock (RUN/.lock), as an MMS-layout
Hugging Face directory: the base with this language (model.safetensors, config.json, preprocessor_config.json),
adapter.<lang>.safetensors, vocab.json keyed by language and tokenizer files naming it. transformers loads
it (`Wav2Vec2ForCTC.from_pretrained(RUN/adapter, target_lang=LANG)`); adapter.<lang>.safetensors with the
vocab.json entry also adds the language to the MMS directory the run started from (the base is unchanged).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from xlsr.errors import XlsrError
from xlsr.interop.adapters import adapter_parameters, init_language
from xlsr.interop.huggingface import export_hf
from xlsr.interop.init_model import InitModel
from xlsr.interop.load import load_pretrained

ADAPTER_DIR = "adapter"  # RUN/adapter/


def check_adapter_training(init: InitModel, target_lang: str | None) -> None:
    """One XlsrError line when `train_only="adapters"` cannot apply: no adapters in `--init`, or no language named."""
    if not init.pretrained or not init.config.adapter_attn_dim:
        raise XlsrError(f"train_only: adapters needs an --init model with MMS adapters (adapter_attn_dim set); "
                        f"{init.source} has none")
    if not target_lang:
        raise XlsrError("train_only: adapters trains one language's adapters; name it with target_lang (--target-lang)")


def train_adapters_only(model: nn.Module, *, new_language: bool) -> tuple[int, int]:
    """Leave gradients on the adapters and the CTC head only (fresh ones for a new language); (trainable, total)."""
    if new_language:
        init_language(model, model.lm_head.out_features)
    else:
        trained = {id(p) for p in adapter_parameters(model)}
        for p in model.parameters():
            p.requires_grad_(id(p) in trained)
    return sum(p.numel() for p in adapter_parameters(model)), sum(p.numel() for p in model.parameters())


def export_run_adapter(run_dir: str | Path, lang: str) -> Path:
    """Write RUN/adapter/ (see the module docstring) from the run's best, else last, checkpoint; returns it."""
    loaded = load_pretrained(run_dir)
    # Wav2Vec2CTCTokenizer is the one that reads a vocab.json keyed by language: "chars" unless the labels are phones.
    kind = "phones" if (loaded.metadata or {}).get("labels") == "phones" else "chars"
    return export_hf(loaded.model, Path(run_dir) / ADAPTER_DIR, loaded.vocab, kind=kind, target_lang=lang)
