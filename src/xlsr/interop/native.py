"""Our checkpoint format: a directory with config.json (what rebuilds the model) and model.safetensors.

config.json = {"format": "xlsr", "version": 1, "architecture": <class name>, "model": <Wav2Vec2Config
dict>, "vocab": <tokens or null>, "metadata": {...}}. Saving is atomic: everything is written and
fsynced in a temporary directory beside the target, which then replaces it by rename, so a crash
never leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from xlsr import model as xm
from xlsr.atomic import write_dir
from xlsr.errors import CheckpointError, listing
from xlsr.interop.safe_pickle import clip
from xlsr.interop.safetensors_file import write_safetensors
from xlsr.interop.state_dict import build_with_weights
from xlsr.jsonl import parse_json
from xlsr.model import Wav2Vec2Config

FORMAT = "xlsr"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURES = ("Wav2Vec2Model", "Wav2Vec2ForPreTraining", "Wav2Vec2ForCTC")


@dataclass
class Loaded:
    """A model rebuilt from a checkpoint, with what came with it."""

    model: torch.nn.Module
    config: Any  # xlsr.model.Wav2Vec2Config
    vocab: list[str] | None = None  # CTC output tokens; index 0 is the blank
    source_format: str = FORMAT  # "xlsr" | "hf" | "fairseq"
    metadata: dict = field(default_factory=dict)


def model_config(model: torch.nn.Module):
    """The Wav2Vec2Config a model was built from."""
    for name in ("config", "cfg"):
        cfg = getattr(model, name, None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            return cfg
    raise CheckpointError(f"{type(model).__name__}: model carries no Wav2Vec2Config (.config)")


def vocab_tokens(vocab) -> list[str] | None:
    """Tokens of a Vocabulary (or a plain token list) as a list of strings."""
    if vocab is None:
        return None
    tokens = getattr(vocab, "tokens", vocab)
    return [str(t) for t in tokens]


def build_model(architecture: str, cfg, vocab_size: int | None = None) -> torch.nn.Module:
    """An untrained model of the named architecture (one of ARCHITECTURES) from a Wav2Vec2Config."""
    if architecture == "Wav2Vec2ForCTC":
        if not vocab_size:
            raise CheckpointError("Wav2Vec2ForCTC needs a vocabulary size")
        return xm.Wav2Vec2ForCTC(cfg, vocab_size)
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    return getattr(xm, architecture)(cfg)


def model_with_weights(architecture: str, cfg, vocab_size: int | None, state: dict[str, torch.Tensor],
                       source: str | Path, *, names: Callable[[str], str] | None = None) -> torch.nn.Module:
    """A model of `architecture` whose weights are `state`'s tensors (not copies), in eval mode; `names` gives the
    file's own name of each of our keys, for the error listing keys that do not fit."""
    return build_with_weights(lambda: build_model(architecture, cfg, vocab_size), state, source, names=names).eval()


def tensors_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict, detached; `write_safetensors` moves each to the CPU as it writes it."""
    return {key: value.detach() for key, value in model.state_dict().items()}


# The files a checkpoint folder of each kind consists of: what save_checkpoint writes ("xlsr"), and what a Hugging Face
# wav2vec2 folder holds ("hf": export_hf's files, transformers' save_pretrained of a model, its processor and tokenizer,
# weights whole or sharded in each of its formats, MMS adapters). A folder holding anything else is not replaced.
_CHECKPOINT_FILES = {
    "xlsr": re.compile(r"config\.json|model\.safetensors"),
    "hf": re.compile(r"(config|preprocessor_config|feature_extractor_config|processor_config"
                     r"|vocab|tokenizer|tokenizer_config|special_tokens_map|added_tokens)\.json"
                     r"|(model\.safetensors|pytorch_model\.bin|tf_model\.h5|flax_model\.msgpack)\.index\.json"
                     r"|model(-\d+-of-\d+)?\.safetensors|pytorch_model(-\d+-of-\d+)?\.bin"
                     r"|tf_model(-\d+-of-\d+)?\.h5|flax_model(-\d+-of-\d+)?\.msgpack"
                     r"|adapter\.[\w-]+\.(safetensors|bin)"),
}


# what file browsers leave in a folder they showed (replaced with the checkpoint's folder like its own files)
_OS_CLUTTER = re.compile(r"\.DS_Store|\._.+|Thumbs\.db|desktop\.ini")


def write_atomic_dir(dst: str | Path, write) -> Path:
    """Call `write(tmp_dir)` to fill a fresh directory, fsync it, then move it to `dst` (replacing it).

    Only an empty folder or an earlier checkpoint is replaced: a folder whose config.json is an xlsr or a Hugging Face
    wav2vec2 one and that holds nothing but that kind's files (_CHECKPOINT_FILES). A file, or a folder holding anything
    else, at `dst` is a CheckpointError naming what is not a checkpoint's; nothing of it is deleted.
    """
    dst = Path(dst)
    if dst.exists():
        foreign = _not_checkpoint_files(dst)
        if foreign:
            raise CheckpointError(f"{dst}: exists and is not a checkpoint folder ({foreign}); not replacing it "
                                  f"(choose another path)")
    return write_dir(dst, write)


def _not_checkpoint_files(dst: Path) -> str | None:
    """What in the existing `dst` is not an earlier checkpoint's, in words; None for an empty folder or a checkpoint."""
    if not dst.is_dir():
        return "it is not a folder"
    names = sorted(_shown(p.name) + ("/" if p.is_dir() else "") for p in dst.iterdir())
    if not names:
        return None
    if not (dst / CONFIG_FILE).is_file():
        return f"it holds {listing(names)} and no {CONFIG_FILE}"
    kind = _checkpoint_kind(dst / CONFIG_FILE)
    if kind is None:
        return f"its {CONFIG_FILE} is neither an xlsr checkpoint's nor a Hugging Face wav2vec2 model's"
    foreign = [name for name in names  # a folder's name ends in "/"
               if not _CHECKPOINT_FILES[kind].fullmatch(name) and not _OS_CLUTTER.fullmatch(name)]
    if foreign:
        return f"besides the checkpoint it holds {listing(foreign)}: move them out"
    return None


def _checkpoint_kind(config: Path) -> str | None:
    """Whose checkpoint a config.json is: "xlsr", "hf" (a Hugging Face wav2vec2 model's), or None (any other)."""
    try:
        data = parse_json(config.read_bytes())
    except (OSError, ValueError):  # unreadable, or not JSON (UnicodeDecodeError is a ValueError)
        return None
    if not isinstance(data, dict):
        return None
    if data.get("format") == FORMAT:
        return "xlsr"
    return "hf" if data.get("model_type") == "wav2vec2" else None


def _shown(name: str) -> str:
    # A name with a newline (or bytes that are not UTF-8) is quoted, so that the refusal stays one line.
    return name if name.isprintable() else repr(name)


def save_checkpoint(
    dir: str | Path, model: torch.nn.Module, *, vocab=None, metadata: dict | None = None
) -> Path:
    """Write `model` (and its CTC vocabulary) to the checkpoint directory `dir`, atomically."""
    architecture = type(model).__name__
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{dir}: cannot save a {architecture}; expected one of {', '.join(ARCHITECTURES)}")
    tokens = vocab_tokens(vocab)
    if architecture == "Wav2Vec2ForCTC" and tokens is not None:
        rows = model.state_dict()["lm_head.weight"].shape[0]
        if rows != len(tokens):
            raise CheckpointError(f"{dir}: vocabulary has {len(tokens)} tokens but lm_head has {rows} rows")
    config = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture,
        "model": model_config(model).to_dict(),
        "vocab": tokens,
        "metadata": dict(metadata or {}),
    }
    tensors = tensors_for_saving(model)

    def write(tmp: Path) -> None:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_json_default) + "\n")
        write_safetensors(tmp / WEIGHTS_FILE, tensors, metadata={"format": "pt"})

    return write_atomic_dir(dir, write)


def _json_default(obj):
    # Config dicts may hold tuples/Paths; anything else is a bug worth seeing.
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> dict:
    """Parse a JSON object from `path`, or raise CheckpointError naming it."""
    try:
        data = parse_json(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file, or CheckpointError naming it (missing, truncated, corrupt)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_native_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a directory holding our config.json."""
    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file():
        return False
    try:
        return parse_json(cfg.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def load_checkpoint(dir: str | Path) -> Loaded:
    """Rebuild the model saved by `save_checkpoint` in `dir`, from its files alone."""
    dir = Path(dir)
    if not dir.is_dir():
        raise CheckpointError(f"{dir}: not a checkpoint directory")
    cfg_path = dir / CONFIG_FILE
    data = read_json(cfg_path)
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not an xlsr checkpoint (format is {data.get('format')!r})")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{cfg_path}: unsupported checkpoint version {data.get('version')!r}")
    architecture = data.get("architecture")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{cfg_path}: unknown architecture {architecture!r}")
    check_config_fields(data, cfg_path)
    try:
        cfg = Wav2Vec2Config.from_dict(data["model"])
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: bad model config ({_one_line(exc)})") from None
    state = read_safetensors(dir / WEIGHTS_FILE)
    tokens = data.get("vocab")
    vocab_size = None
    if architecture == "Wav2Vec2ForCTC":
        if "lm_head.weight" not in state:
            raise CheckpointError(f"{dir / WEIGHTS_FILE}: missing keys: lm_head.weight")
        vocab_size = state["lm_head.weight"].shape[0]
        if tokens is not None and len(tokens) != vocab_size:
            raise CheckpointError(
                f"{cfg_path}: vocab has {len(tokens)} tokens but lm_head.weight has {vocab_size} rows"
            )
    model = model_with_weights(architecture, cfg, vocab_size, state, dir / WEIGHTS_FILE)
    return Loaded(model, cfg, tokens, FORMAT, dict(data.get("metadata") or {}))


def check_config_fields(data: dict, path: Path) -> None:
    """A CheckpointError naming `path` and the field when our config.json (`data`) lacks the model config or holds a
    field of the wrong type: `model` an object, `vocab` null or a list of token strings, `metadata` null or an object."""
    if "model" not in data:
        raise CheckpointError(f"{path}: no 'model' field (the model config that rebuilds the network)")
    if not isinstance(data["model"], dict):
        raise CheckpointError(f"{path}: model={clip(repr(data['model']))}, expected an object (the model config)")
    vocab = data.get("vocab")
    if vocab is not None and not (isinstance(vocab, list) and all(isinstance(token, str) for token in vocab)):
        raise CheckpointError(f"{path}: vocab={clip(repr(vocab))}, expected null or a list of token strings")
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata={clip(repr(metadata))}, expected an object")
