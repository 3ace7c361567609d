"""Our checkpoint format: a directory with config.json (what rebuilds the model) and model.safetensors.

config.json = {"format": "xlsr", "version": 1, "architecture": <class name>, "model": <Wav2Vec2Config
dict>, "vocab": <tokens or null>, "metadata": {...}}. Saving is atomic: everything is written and
fsynced in a temporary directory beside the target, which then replaces it by rename, so a crash
never leaves a half-written checkpoint where a good one was. Into a folder that holds more than a
checkpoint (a Hugging Face hub clone: .git, README.md, ...) the files are written beside the rest
instead, staged and fsynced inside it first (write_atomic_dir).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from xlsr import model as xm
from xlsr.atomic import fsync, write_dir
from xlsr.errors import CheckpointError, listing
from xlsr.interop.lfs_pointer import check_not_lfs_pointer
from xlsr.interop.safe_pickle import clip
from xlsr.interop.safetensors_file import write_safetensors
from xlsr.interop.state_dict import build_with_weights
from xlsr.jsonl import parse_json
from xlsr.model import Wav2Vec2Config

try:
    import fcntl
except ImportError:  # Windows: writers of one folder are not kept apart (see _only_writer)
    fcntl = None

log = logging.getLogger(__name__)

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


# What an MMS language code may hold: it names the file adapter.<lang>.safetensors (ISO 639-3 codes, with MMS's
# "-script_latin"-like suffixes); the folder rules below know such a file by it.
LANGUAGE_CODE = re.compile(r"[\w-]+")

# The files a checkpoint folder of each kind consists of: what save_checkpoint writes ("xlsr"), and what a Hugging Face
# wav2vec2 folder holds ("hf": export_hf's files, transformers' save_pretrained of a model, its processor and tokenizer,
# weights whole or sharded in each of its formats, MMS adapters). A folder holding anything else is not replaced whole
# (write_atomic_dir).
_CHECKPOINT_FILES = {
    "xlsr": re.compile(r"config\.json|model\.safetensors"),
    "hf": re.compile(r"(config|preprocessor_config|feature_extractor_config|processor_config"
                     r"|vocab|tokenizer|tokenizer_config|special_tokens_map|added_tokens)\.json"
                     r"|(model\.safetensors|pytorch_model\.bin|tf_model\.h5|flax_model\.msgpack)\.index\.json"
                     r"|model(-\d+-of-\d+)?\.safetensors|pytorch_model(-\d+-of-\d+)?\.bin"
                     r"|tf_model(-\d+-of-\d+)?\.h5|flax_model(-\d+-of-\d+)?\.msgpack"
                     rf"|adapter\.{LANGUAGE_CODE.pattern}\.(safetensors|bin)"),
}


# what file browsers leave in a folder they showed (replaced with the checkpoint's folder like its own files)
_OS_CLUTTER = re.compile(r"\.DS_Store|\._.+|Thumbs\.db|desktop\.ini")

# A training checkpoint's state (ours: trainer.pt; transformers' Trainer: optimizer.pt) belongs to the weights beside
# it: a resume would pair it with the new ones, so a folder holding it is not written into.
_TRAINING_STATE = re.compile(r"trainer\.pt|optimizer\.pt")

# What transformers' Wav2Vec2ProcessorWithLM (pyctcdecode) saves beside a model: its decoder's alphabet and n-gram LM
_DECODER_FILES = ("alphabet.json", "language_model")

# Inside a folder written into (see write_atomic_dir): the new checkpoint's files, complete and on disk, and _PLAN,
# the names to move in and the old checkpoint's files to remove.
_STAGE = ".xlsr-staged-checkpoint"
_PLAN = ".plan.json"
# Written first into the staging folder, "*": git ignores the folder and all it holds (the clone's `git add .` after
# a killed write would commit the staged weights, or half-written ones) until it is gone.
_GITIGNORE = ".gitignore"
# weights, and the index that names their shards: out first and in last (_move_in)
_WEIGHTS = re.compile(r".+\.(safetensors|bin|h5|msgpack)|.+\.index\.json")


def write_atomic_dir(dst: str | Path, write) -> Path:
    """Call `write(folder)` to fill a fresh folder with a checkpoint's files (config.json among them), fsync them, then
    put them at `dst`.

    Where `dst` is absent, empty, or holds an earlier checkpoint and nothing else (a config.json that `_checkpoint_kind`
    takes for an xlsr or a Hugging Face wav2vec2 one, that kind's _CHECKPOINT_FILES, what file browsers leave), the
    new folder replaces it whole by rename.

    A folder holding other things too is written into, those things left as they are, when it is a Hugging Face hub
    clone or the like: its config.json is such a checkpoint's, or it has none and holds `.git` and no checkpoint file
    of either kind. Every file the new checkpoint writes that is there already must be the old checkpoint's (its
    kind's patterns), and no training state (trainer.pt, optimizer.pt: a resume would pair it with the new weights)
    may be there. The old checkpoint's files that the new one does not write are removed, so that none is loaded with
    it (an old pytorch_model.bin beside the new model.safetensors, an old vocab.json). The new files are written and
    fsynced in `dst/.xlsr-staged-checkpoint` (write_dir: it gets that name only once complete) with the plan of what
    to move in and what to remove, and a .gitignore that keeps git from adding it; then the old files are removed,
    weights first, and the new ones renamed into place, weights last (_move_in), and the staged folder removed. A
    crash leaves that staged folder (or, during staging, write_dir's temporary one, also ignored), and `dst` either
    with the old checkpoint whole or with no weights at all, which readers (ours and transformers') refuse rather
    than load a mix of two models; they never look into the staged folder. The next write into `dst` first finishes
    the interrupted one from its plan, then does its own. Writers of one `dst` take turns (flock on the folder, where
    the file system has it).

    Anything else at `dst` (a file; a folder with another or no config.json and no `.git`; a file the new checkpoint
    would overwrite that is not the old checkpoint's) is a CheckpointError naming what is in the way; nothing of it
    is changed.
    """
    dst = Path(dst)
    if not dst.exists():
        return write_dir(dst, write)
    if not dst.is_dir():
        raise _refusal(dst, "it is not a folder")
    with _only_writer(dst):
        _finish_interrupted_write(dst)
        kind = _written_into_as(dst)
        if kind == "replace":
            return write_dir(dst, write)
        return _write_into(dst, write, kind)


def _refusal(dst: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{dst}: exists and is not a checkpoint folder ({why}); not replacing it (choose another "
                           f"path)")


def _written_into_as(dst: Path) -> str | None:
    """How a checkpoint is written to the existing folder `dst` (see write_atomic_dir): "replace" (empty, or an earlier
    checkpoint alone), the kind of the checkpoint it holds with other things ("xlsr", "hf"), or None (a clone without
    a checkpoint), each written into; a CheckpointError saying what is in the way otherwise."""
    names = sorted(_shown(p.name) + ("/" if p.is_dir() else "") for p in dst.iterdir())
    if not names:
        return "replace"
    if not (dst / CONFIG_FILE).is_file():
        if not (dst / ".git").exists():
            raise _refusal(dst, f"it holds {listing(names)} and no {CONFIG_FILE}")
        found = [name for name in names if _CHECKPOINT_FILES["hf"].fullmatch(name)]
        if found:  # whose they are nothing says: not ours to replace, and kept they could be loaded with the new ones
            raise _refusal(dst, f"it holds {listing(found)} and no {CONFIG_FILE}")
        return None
    kind = _checkpoint_kind(dst / CONFIG_FILE)
    if kind is None:
        raise _refusal(dst, f"its {CONFIG_FILE} is neither an xlsr checkpoint's nor a Hugging Face wav2vec2 model's")
    foreign = [name for name in names  # a folder's name ends in "/"
               if not _CHECKPOINT_FILES[kind].fullmatch(name) and not _OS_CLUTTER.fullmatch(name)]
    if not foreign:
        return "replace"
    training = [name for name in foreign if _TRAINING_STATE.fullmatch(name)]
    if training:
        raise _refusal(dst, f"besides the checkpoint it holds {listing(training)}: move them out")
    return kind


def _write_into(dst: Path, write, kind: str | None) -> Path:
    """Write a checkpoint into the folder `dst` beside what else it holds: staged, then moved in (see write_atomic_dir)."""

    def stage(tmp: Path) -> None:
        (tmp / _GITIGNORE).write_text("*\n")
        write(tmp)
        new = sorted(p.name for p in tmp.iterdir() if p.name != _GITIGNORE)
        odd = [name for name in new if not _CHECKPOINT_FILES["hf"].fullmatch(name)]
        if odd or CONFIG_FILE not in new:  # what _move_in relies on: checkpoint files only, config.json among them
            raise CheckpointError(f"{dst}: the checkpoint written holds {listing(odd) or 'no ' + CONFIG_FILE}")
        # Besides the old checkpoint's files, nothing may be there that the new one would overwrite, or that its
        # readers would take for its own (a pytorch_model.bin beside an xlsr checkpoint, when an HF one comes).
        theirs = _CHECKPOINT_FILES[_checkpoint_kind(tmp / CONFIG_FILE) or "hf"]
        old, taken = set(), []
        for name in sorted(os.listdir(dst)):
            if kind is not None and _CHECKPOINT_FILES[kind].fullmatch(name) and not _is_folder(dst / name):
                old.add(name)
            elif name in new or theirs.fullmatch(name):
                taken.append(_shown(name) + ("/" if _is_folder(dst / name) else ""))
        if taken:
            raise _refusal(dst, f"besides the checkpoint it holds {listing(taken)}: move them out" if kind else
                           f"it holds {listing(taken)} and no {CONFIG_FILE}")
        plan = {"write": new, "remove": sorted(old - set(new))}
        (tmp / _PLAN).write_text(json.dumps(plan, indent=2) + "\n")

    write_dir(dst / _STAGE, stage)
    _move_in(dst, dst / _STAGE)
    kept = [name for name in _DECODER_FILES if (dst / name).exists()]
    if kept:  # the user's, made for the earlier model: kept, but a processor would pair them with the new one
        log.warning("%s: kept the files of a language-model decoder (Wav2Vec2ProcessorWithLM: %s), made for the "
                    "earlier model's vocabulary; build them again if the vocabulary changed", dst, listing(kept))
    return dst


def _move_in(dst: Path, staged: Path) -> None:
    """Carry out the plan of the complete staged folder in `dst`. Run again after a crash, it goes on where it stopped:
    a name still in `staged` is not moved in yet, so the file of that name in `dst` is the old checkpoint's.

    The old weights go first and the new ones come last, config.json just before them: at no moment does `dst` hold
    weights beside another model's config.json, nor weights without a config.json (which transformers 5 loads with
    its default config)."""
    plan = read_json(staged / _PLAN)
    ours = _CHECKPOINT_FILES["hf"]  # nothing but a checkpoint's file is ever moved or removed, whatever the plan says
    new = [name for name in plan.get("write", []) if ours.fullmatch(name) and (staged / name).exists()]
    old = [name for name in plan.get("remove", []) + new if ours.fullmatch(name)]
    for name in old:
        if _WEIGHTS.fullmatch(name):
            (dst / name).unlink(missing_ok=True)
    fsync(dst)  # the old checkpoint cannot load now
    for name in old:
        if not _WEIGHTS.fullmatch(name):
            (dst / name).unlink(missing_ok=True)
    for name in new:
        if not _WEIGHTS.fullmatch(name) and name != CONFIG_FILE:
            os.replace(staged / name, dst / name)
    fsync(dst)
    if CONFIG_FILE in new:
        os.replace(staged / CONFIG_FILE, dst / CONFIG_FILE)
    fsync(dst)
    for name in sorted((name for name in new if _WEIGHTS.fullmatch(name)), key=lambda name: name == WEIGHTS_FILE):
        os.replace(staged / name, dst / name)  # model.safetensors last: the adapters it needs are in before it
    fsync(dst)
    (staged / _PLAN).unlink()
    (staged / _GITIGNORE).unlink(missing_ok=True)  # missing in a folder staged before it was written there
    staged.rmdir()


def _finish_interrupted_write(dst: Path) -> None:
    """Finish what a writer into `dst` killed after staging its checkpoint left undone (see write_atomic_dir)."""
    staged = dst / _STAGE
    if not _is_folder(staged):
        return
    if (staged / _PLAN).is_file():
        _move_in(dst, staged)
    elif {p.name for p in staged.iterdir()} <= {_GITIGNORE}:  # a writer killed as it removed it
        (staged / _GITIGNORE).unlink(missing_ok=True)
        staged.rmdir()
    else:
        raise CheckpointError(f"{staged}: a folder without {_PLAN}, not one an xlsr write left; move it out of {dst}")


@contextmanager
def _only_writer(dst: Path):
    """Hold an exclusive lock on the folder `dst` while a checkpoint is written to it: another writer waits, and then
    locks the folder that `dst` names by then. Where folders cannot be locked (no fcntl; some network file systems),
    writers are not kept apart."""
    if fcntl is None:
        yield
        return
    while True:
        fd = os.open(dst, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass  # not lockable here
            if os.path.samestat(os.fstat(fd), os.stat(dst)):
                yield
                return
        finally:
            os.close(fd)  # releases the lock


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


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
    check_not_lfs_pointer(path)
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
