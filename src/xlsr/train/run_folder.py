"""The one check before a run writes into its folder, for every task: a folder that holds another kind of run,
a run from another model source, or checkpoints of another model is refused in one line, and nothing in it
is touched. A folder without checkpoints has nothing to resume; only its config.yaml is checked.

A task reads whether the run resumes (`resume_checkpoint`) before it builds its model: a resumed run's model comes from
its own checkpoint, and the weights of its `--init` are not read (interop/init_model.py).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from xlsr.config import read_yaml
from xlsr.errors import CheckpointError, XlsrError
from xlsr.interop.load import model_mismatch, read_checkpoint_config
from xlsr.train.checkpoint import find_resume_dir

# The fields of every task's config that say where the model comes from (the preset, or --init weights; an MMS
# --init's language, whose adapters and head the run took)
MODEL_SOURCE_KEYS = ("preset", "init", "target_lang")


def resume_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint a run into the folder `out` resumes from (the one the Trainer loads); None: a fresh run."""
    return find_resume_dir(Path(out) / "checkpoints") if out else None


def check_resumable(out: str | Path, read: Path) -> None:
    """XlsrError when `out` has no checkpoint left although the run's model was read from its checkpoint `read` (the
    weights of --init unread): the model would otherwise train on from random weights."""
    if resume_checkpoint(out) is None:
        raise XlsrError(f"{out}: its checkpoints are gone since this run read {read}; run the command again")


def check_run_folder(run_dir: Path, config: dict, model: nn.Module, vocab: list[str] | None = None) -> None:
    """Refuse `run_dir` unless resuming it with `config` (the resolved run config), `model` and, for a CTC model,
    its output `vocab` is the same run (a vocabulary of the same size with other tokens would give the head's
    rows other meanings)."""
    check_config_file(run_dir, config)
    resume_dir = find_resume_dir(run_dir / "checkpoints")
    if resume_dir is not None:
        mismatch = model_mismatch(resume_dir, model)
        if mismatch:
            raise CheckpointError(f"{run_dir}: holds {mismatch}; choose another --out")
        saved = read_checkpoint_config(resume_dir).get("vocab")
        if vocab is not None and saved is not None and list(saved) != list(vocab):
            diff = next((i for i, (a, b) in enumerate(zip(saved, vocab)) if a != b), min(len(saved), len(vocab)))
            raise CheckpointError(f"{run_dir}: holds a run with another vocabulary ({len(saved)} tokens there, "
                                  f"{len(vocab)} now; first difference at index {diff}): the labels, --labels or "
                                  f"--vocab changed; choose another --out")


def check_config_file(run_dir: Path, config: dict) -> None:
    """Refuse a config.yaml with keys this run's config lacks (another kind of run) or another model source."""
    path = run_dir / "config.yaml"
    if not config or not path.is_file():
        return
    old = read_yaml(path)
    foreign = sorted(set(old) - set(config))
    if foreign:
        raise XlsrError(f"{run_dir}: holds another kind of run (its config.yaml has {', '.join(foreign[:3])}, "
                        f"which this command does not take); choose another --out")
    for key in MODEL_SOURCE_KEYS:
        if key in config and old.get(key) != config[key]:
            raise XlsrError(f"{run_dir}: holds a run with {key} {old.get(key)!r} (config.yaml), not "
                            f"{config[key]!r}; choose another --out")
