"""Our checkpoint format: a directory with config.json (what rebuilds the model) and model.safetensors.

config.json = {"format": "xlsr", "version": 1, "architecture": <class name>, "model": <Wav2Vec2Config
dict>, "vocab": <tokens or null>, "metadata": {...}}. Saving is atomic: everything is written and
fsynced in a temporary directory beside the target, which then replaces it by rename, so a crash
never leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from xlsr import model as xm
from xlsr.atomic import write_dir
from xlsr.errors import CheckpointError
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


def write_atomic_dir(dst: str | Path, write) -> Path:
    """Call `write(tmp_dir)` to fill a fresh directory, fsync it, then move it to `dst` (replacing it).

    Only an empty folder or an earlier checkpoint (a folder with config.json) is replaced: a file or a
    folder of something else at `dst` is a CheckpointError, never deleted.
    """
    dst = Path(dst)
    if dst.exists() and not (dst.is_dir() and (CONFIG_FILE in {p.name for p in dst.iterdir()}
                                               or not any(dst.iterdir()))):
        raise CheckpointError(f"{dst}: exists and is not a checkpoint folder; not replacing it (choose another path)")
    return write_dir(dst, write)


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
    try:
        cfg = Wav2Vec2Config.from_dict(data.get("model") or {})
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
