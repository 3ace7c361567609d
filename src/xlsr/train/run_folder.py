"""The one check before a run writes into its folder, for every task: a folder that holds another kind of run,
a run from another model source, or checkpoints of another model is refused in one line, and nothing in it
is touched. A folder without checkpoints has nothing to resume; only its config.yaml is checked.

A resume given settings other than those RUN/config.yaml records (the run's last start) is
- refused, in one line naming the setting, its recorded value and the given one, where the change cannot take
  effect: the model source (--init; the preset, where there is no --init; an MMS target_lang); the model (a
  --model.* value that changes the checkpoint's config; with a Hugging Face or fairseq --init, or one no longer
  there, also a --model.* left out, since the value it replaced is nowhere to be read back); the settings that act
  only when a run starts (STARTED_WITH_KEYS: the seed, the labels and CTC head, what trains); a max_updates below
  the update reached;
- honoured from the resumed update on, and said once in one line (recorded -> given, from `check_run_folder`), for
  every other setting (a finished run, which trains no further, refuses them: config.yaml would record settings its
  model never trained with): the learning rate and its schedule, a longer or shorter max_updates, the batch size, the
  data, the validation and checkpoint intervals, the device. A change of data is also warned about by the loader
  (data/batching.py). A path spelled otherwise (relative, absolute, through a link) is no change, nor one spelled
  from another working folder: config.yaml's first line records the folder the run's relative paths start in.

A task reads whether the run resumes (`resume_checkpoint`) before it builds its model: a resumed run's model comes from
its own checkpoint, and the weights of its `--init` are not read (interop/init_model.py).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from pathlib import Path

from torch import nn

from xlsr.config import read_yaml
from xlsr.errors import CheckpointError, XlsrError
from xlsr.interop.init_model import resumes_from_record
from xlsr.interop.load import model_mismatch, read_checkpoint_config
from xlsr.train.checkpoint import find_resume_dir

# The fields of every task's config that say where the model comes from (--init weights, or without them the preset;
# an MMS --init's language, whose adapters and head the run took). The preset is compared only where it decides the
# model, without --init: with one, a resume builds the model from --init's or its own checkpoint's config.
MODEL_SOURCE_KEYS = ("init", "preset", "target_lang")
# Settings that act only when a run starts: its random state and first weights (seed), its vocabulary and new CTC
# head (labels, new_head, blank_bias), which parameters train (train_only, freeze_feature_encoder: also the optimizer's
# groups). A resume has all of that from its checkpoint, so another value could not take effect.
STARTED_WITH_KEYS = ("seed", "labels", "new_head", "blank_bias", "train_only", "freeze_feature_encoder")
# Settings that name files or folders: compared as the paths they resolve to
PATH_KEYS = ("init", "data", "train", "dev", "vocab", "probe_data")
# How a run is shown, not what it computes, and the folder itself: no word on resume
UNSAID_KEYS = ("out", "progress", "tensorboard")
# Where and how a run runs, not what its model learns (cf. released/verify.py's MACHINE_KEYS): a finished run re-run
# with other values of these, on another machine, is no change to refuse
RUN_AS_KEYS = ("device", "precision", "num_workers", "decode_timeout", "compile", "activation_checkpointing", "distributed", "data",
               "train", "dev", "log_every", "valid_every", "save_every", "keep_last", "feature_health_frames",
               "probe_every", "probe_data", "probe_labels", "probe_steps")


def resume_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint a run into the folder `out` resumes from (the one the Trainer loads); None: a fresh run."""
    return find_resume_dir(Path(out) / "checkpoints") if out else None


def check_resumable(out: str | Path, read: Path) -> None:
    """XlsrError when `out` has no checkpoint left although the run's model was read from its checkpoint `read` (the
    weights of --init unread): the model would otherwise train on from random weights."""
    if resume_checkpoint(out) is None:
        raise XlsrError(f"{out}: its checkpoints are gone since this run read {read}; run the command again")


def check_run_folder(run_dir: Path, config: dict, model: nn.Module, vocab: list[str] | None = None) -> str | None:
    """Refuse `run_dir` unless resuming it with `config` (the resolved run config), `model` and, for a CTC model,
    its output `vocab` is the same run (a vocabulary of the same size with other tokens would give the head's
    rows other meanings). On a resume with settings changed that take effect, the line that says which (module
    docstring), for the caller to say once the resume is accepted (a refusal after it stays one line); else None."""
    resume_dir = find_resume_dir(run_dir / "checkpoints")
    changed = check_config_file(run_dir, config, resume_dir)
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
    if not changed:
        return None
    reached = _update_of(resume_dir) if resume_dir is not None else None
    if reached is not None and reached >= config.get("max_updates", math.inf):
        # nothing will train: config.yaml would record settings the model was never trained with. Where it runs
        # (another machine, the release builder re-run without --device) is no such setting: nothing to say.
        learned = [c for c in changed if c.split(" ", 1)[0] not in RUN_AS_KEYS]
        if learned:
            raise XlsrError(f"{run_dir}: holds a finished run (update {reached} of {config['max_updates']}), so "
                            f"{'; '.join(learned)} would not take effect; give a --max-updates above {reached} to "
                            f"train on with them, or choose another --out")
        return None
    return (f"{run_dir}: resumed with settings other than its config.yaml's, in effect from here on: "
            f"{'; '.join(changed)}")


def check_config_file(run_dir: Path, config: dict, resume_dir: Path | None = None) -> list[str]:
    """Refuse a config.yaml with keys this run's config lacks (another kind of run) or another model source, and,
    on a resume from `resume_dir`, a change that cannot take effect (module docstring). The changes that do, as
    "key recorded -> given"."""
    path = run_dir / "config.yaml"
    if not config or not path.is_file():
        return []
    old = read_yaml(path)
    start = recorded_start(path)
    foreign = sorted(set(old) - set(config))
    if foreign:
        raise XlsrError(f"{run_dir}: holds another kind of run, or one of another xlsr version (its config.yaml has "
                        f"{', '.join(foreign[:3])}, which this command does not take); choose another --out")
    for key in MODEL_SOURCE_KEYS:
        if key == "preset" and _resolved(config.get("init")) is not None:
            continue  # unused: the model is --init's
        if key in config and not same_setting(key, old.get(key), config[key], start):
            to_resume = (f"leave --{_option(key)} out" if old.get(key) is None else
                         f"give --{_option(key)} {_as_given_here(_shown(old[key]), start, key)}")
            raise XlsrError(f"{run_dir}: holds a run with {key} {old.get(key)!r} (config.yaml), not "
                            f"{config[key]!r}; {to_resume} to resume it, or choose another --out")
    if resume_dir is None:
        return []
    _check_resumed_settings(run_dir, old, config, resume_dir)
    return [f"{key} {_shown(old[key])} -> {_shown(value)}" for key, value in config.items()
            if key in old and key not in (*UNSAID_KEYS, *MODEL_SOURCE_KEYS, "model")
            and not same_setting(key, old[key], value, start)]


def _check_resumed_settings(run_dir: Path, old: dict, config: dict, resume_dir: Path) -> None:
    """XlsrError for a change of the recorded settings `old` that a resume from `resume_dir` cannot honour (besides
    the model source and the model's config, which the callers check)."""
    for key in STARTED_WITH_KEYS:
        if key in config and key in old and old[key] != config[key]:
            raise XlsrError(f"{run_dir}: holds a run started with {key} {_shown(old[key])} (config.yaml), not "
                            f"{_shown(config[key])}: it acts only when a run starts; give --{_option(key)} "
                            f"{_shown(old[key])} to resume, or choose another --out")
    reached = _update_of(resume_dir)
    if reached is not None and "max_updates" in config and config["max_updates"] < reached:
        raise XlsrError(f"{run_dir}: holds a run at update {reached} ({resume_dir.resolve().name}), past max_updates "
                        f"{config['max_updates']}; give --max-updates {reached} or more to resume, or choose "
                        f"another --out")
    if resumes_from_record(config.get("init")):
        given = config.get("model") or {}
        frozen_cnn = config.get("freeze_feature_encoder") or config.get("train_only") == "adapters"
        for key, value in (old.get("model") or {}).items():
            # a frozen CNN's gradient multiplier: the checkpoint holds 0 whatever a run before xlsr refused it said
            if key == "feature_grad_mult" and frozen_cnn:
                continue
            if key not in given:
                raise XlsrError(f"{run_dir}: holds a run with model.{key} {_shown(value)} (config.yaml), not given "
                                f"now; a resume from {config['init']} takes the model as its checkpoint records "
                                f"it, where the value of --init is not kept: give --model.{key} {_shown(value)} to "
                                f"resume, or choose another --out")


def _update_of(checkpoint: Path) -> int | None:
    """The update a checkpoint folder (update_N, or `last` pointing at one) was written at."""
    m = re.fullmatch(r"update_(\d+)", checkpoint.resolve().name)
    return int(m.group(1)) if m else None


STARTED_IN = "relative paths below start in the folder the run was started from: "  # config.yaml's first line


def working_folder() -> str | None:
    """The working folder (where a run's relative paths start); None where it is gone (removed after the start)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def started_in_note(cwd: str | None) -> str:
    """The comment a run writes above its config.yaml: the working folder `cwd` its relative paths start in; none
    for no folder, or one the comment cannot hold as one UTF-8 line (a name not UTF-8 on disk, a line break):
    relative paths are then read from the folder of the resume, as before the note."""
    try:
        (cwd or "").encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return STARTED_IN + cwd if cwd and len(cwd.splitlines()) == 1 else ""


def recorded_start(config_file: Path) -> str | None:
    """The working folder a run's config.yaml says its relative paths start in; None where it says none (earlier
    versions, a file written by hand)."""
    try:
        with open(config_file, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None
    return first[len("# " + STARTED_IN):] if first.startswith("# " + STARTED_IN) else None


def same_setting(key: str, recorded, given, start: str | None = None) -> bool:
    """Whether a setting's recorded and given values are one; a path setting's as the paths they resolve to: the
    recorded one from the folder the run was started in (`start`, where known) or from this one (a project moved
    as a whole, its paths relative), the given one from this one. So a resume from another working folder, its
    paths spelled from there, is the same run."""
    if key in PATH_KEYS:
        return _resolved(recorded) == _resolved(given) or (
            start is not None and _resolved(recorded, start) == _resolved(given))
    return recorded == given


def _resolved(value, start: str | None = None):
    """A path setting's value with each path resolved (None for no path: "", "none"), a relative one from `start`
    (default: the working folder)."""
    if isinstance(value, list):
        return [_resolved(v, start) for v in value]
    if value in (None, "", "none"):
        return None
    if not isinstance(value, str):
        return value
    return os.path.realpath(os.path.join(start, value) if start is not None else value)


def _as_given_here(value: str, start: str | None, key: str) -> str:
    """A recorded path as one types it in this folder (it was recorded as typed in `start`), quoted for a shell; a
    setting that names no path (a preset, a language) as it is, whatever files `start` holds."""
    if key in PATH_KEYS and start is not None and not os.path.isabs(value) and \
            os.path.exists(os.path.join(start, value)):
        value = os.path.relpath(os.path.join(start, value))
    return shlex.quote(value)


def _shown(value) -> str:
    """A setting's value as the command line takes it (a list comma-separated, true/false, none)."""
    if isinstance(value, list | tuple):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)


def _option(key: str) -> str:
    """The command-line option of a config key: max_updates -> max-updates."""
    return key.replace("_", "-")
