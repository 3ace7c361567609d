"""`load_pretrained(path)`: one entry point for our checkpoints, Hugging Face directories and fairseq `.pt` files."""

from __future__ import annotations

import json
import re
from pathlib import Path

from xlsr.errors import CheckpointError, listing
from xlsr.interop.fairseq import load_fairseq
from xlsr.interop.fairseq_export import CHECKPOINT_NAME as FAIRSEQ_EXPORT_NAME
from xlsr.interop.huggingface import import_hf
from xlsr.interop.lfs_pointer import check_not_lfs_pointer
from xlsr.interop.native import (
    CONFIG_FILE,
    FORMAT,
    Loaded,
    check_config_fields,
    is_native_checkpoint,
    load_checkpoint,
    read_json,
)

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # pickle protocol >= 2: torch's legacy (pre-1.6) format starts this way


def detect_format(path: str | Path) -> str:
    """"xlsr", "hf" or "fairseq" for what `path` holds; CheckpointError naming it otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            pts = sorted(str(p) for p in path.glob("*.pt") if p.is_file())
            if pts:  # a folder a fairseq checkpoint was downloaded to, or a fairseq run's save_dir
                raise CheckpointError(f"{path}: a folder, not a checkpoint (no config.json); for a fairseq "
                                      f"checkpoint give its .pt file: {listing(pts)}")
            snapshots = sorted(str(p.parent) for p in path.glob("snapshots/*/config.json"))
            if snapshots:  # huggingface_hub's cache folder of a model (models--USER--MODEL)
                raise CheckpointError(f"{path}: a Hugging Face cache folder, not a checkpoint (no config.json); give "
                                      f"one of its snapshots: {listing(snapshots)}")
            raise CheckpointError(f"{path}: not a checkpoint directory (no config.json)")
        cfg = read_json(cfg_path)
        if cfg.get("format") == "xlsr":
            return "xlsr"
        if cfg.get("model_type") == "wav2vec2":
            return "hf"
        kind = cfg.get("model_type") or cfg.get("format")
        raise CheckpointError(f"{cfg_path}: not a wav2vec2 checkpoint (model_type/format is {kind!r})")
    check_not_lfs_pointer(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC or head[:1] == _PICKLE_PROTO:
        return "fairseq"
    raise CheckpointError(f"{path}: not a checkpoint (expected a fairseq .pt, or a directory with config.json)")


def resolve_run_folder(path: str | Path) -> Path:
    """A training run folder means its best checkpoint (else its last); any other path is returned as is."""
    path = Path(path)
    root = path / "checkpoints"
    if path.is_dir() and root.is_dir() and not (path / "config.json").is_file():
        for name in ("best", "last"):
            if (root / name / "config.json").is_file():
                return root / name
        pts = sorted(str(p) for p in root.glob("*.pt") if p.is_file())
        if pts:  # a fairseq (hydra) run's output folder: its checkpoints are .pt files in checkpoints/
            raise CheckpointError(f"{path}: a fairseq run's folder, not a checkpoint; give one of its .pt files: "
                                  f"{listing(pts)}")
        raise CheckpointError(f"{path}: run folder without a complete checkpoint in checkpoints/best or last")
    return path


# The files of a checkpoint folder that stand for the folder: its config.json, its weights whole or sharded (a shard
# or the index naming them), as a Hugging Face folder or ours holds them.
_FOLDER_FILE = re.compile(r"config\.json|model\.safetensors\.index\.json|pytorch_model\.bin\.index\.json"
                          r"|model(-\d+-of-\d+)?\.safetensors|pytorch_model(-\d+-of-\d+)?\.bin")


def checkpoint_path(path: str | Path) -> Path:
    """The file or directory that `load_pretrained(path)` reads: a run folder's best (else last) checkpoint, the
    directory of a config.json or weights file (a shard, an index) inside one, the checkpoint.pt of a `--to fairseq`
    folder."""
    path = resolve_run_folder(path)
    if path.is_file() and _FOLDER_FILE.fullmatch(path.name):
        return path.parent
    if path.is_dir() and not (path / "config.json").exists() and (path / FAIRSEQ_EXPORT_NAME).is_file():
        return path / FAIRSEQ_EXPORT_NAME  # a folder `xlsr convert --to fairseq` wrote
    return path


def read_checkpoint_config(directory: str | Path) -> dict:
    """The config.json of our checkpoint directory (architecture, model config, vocab, metadata), weights unread."""
    path = Path(directory) / CONFIG_FILE
    data = read_json(path)
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an xlsr checkpoint config")
    check_config_fields(data, path)  # its model, vocab and metadata of the types every reader takes
    return data


def model_mismatch(directory: str | Path, model) -> str | None:
    """How the checkpoint in `directory` differs from `model`, as words after "holds": its architecture, else its
    first differing config field ("key: <there> there, <now> now"); None when it holds the same model."""
    saved = read_checkpoint_config(directory)
    architecture = type(model).__name__
    if saved.get("architecture") != architecture:
        return f"a {saved.get('architecture')} checkpoint, not a {architecture}"
    there = saved.get("model") or {}
    now = json.loads(json.dumps(model.config.to_dict(), default=list))  # tuples as JSON has them
    diff = [k for k in sorted(set(now) | set(there)) if now.get(k) != there.get(k)]
    if diff:
        return f"a run with another model (model.{diff[0]}: {there.get(diff[0])!r} there, {now.get(diff[0])!r} now)"
    return None


def load_pretrained(
    path: str | Path, *, dictionary: str | Path | None = None, target_lang: str | None = None,
    encoder_of_classifier: bool = False,
) -> Loaded:
    """Load a wav2vec 2.0 / XLSR model from our checkpoint dir, an HF dir or a fairseq `.pt`.

    A run folder, a file inside a checkpoint directory or a `--to fairseq` folder means what `checkpoint_path`
    says. `dictionary` is a fairseq dict file (e.g. dict.ltr.txt) for fine-tuned `.pt` models; by default one
    named like dict.ltr.txt beside the checkpoint is used if present.
    `target_lang` picks one language of an MMS checkpoint with per-language adapters (HF or fairseq).
    `encoder_of_classifier`: a Hugging Face classification model is read as its encoder (import_hf), not refused.
    """
    path = checkpoint_path(path)
    fmt = detect_format(path)
    if dictionary is not None and fmt != "fairseq":
        raise CheckpointError(f"{dictionary}: a fairseq dictionary is read for a fairseq .pt only; {path} is "
                              f"{'an' if fmt == 'xlsr' else 'a'} {fmt} checkpoint, whose vocabulary comes with it")
    if fmt == "xlsr":
        loaded = load_checkpoint(path)
        if target_lang is not None and loaded.metadata.get("target_lang") != target_lang:
            held = loaded.metadata.get("target_lang")
            raise CheckpointError(f"{path}: no language {target_lang!r}; available: {held or 'none'}")
        return loaded
    if fmt == "hf":
        return import_hf(path, target_lang=target_lang, encoder_of_classifier=encoder_of_classifier)
    return load_fairseq(path, dictionary=dictionary, target_lang=target_lang)


__all__ = ["Loaded", "checkpoint_path", "detect_format", "is_native_checkpoint", "load_pretrained", "model_mismatch",
           "read_checkpoint_config", "resolve_run_folder"]
