"""Atomic, resumable training checkpoints inside a run folder.

Layout (`RUN/checkpoints/`):

    update_0000500/        an interop checkpoint dir (config.json + model.safetensors) + trainer.pt
    update_0001000/
    last -> update_0001000 a symlink, swapped atomically with os.replace
    best -> update_0000500

A checkpoint is staged in `.tmp-update_*`, its files fsynced, then renamed to its final name; only
then is `last` re-pointed. A kill at any moment leaves `last` pointing at a complete checkpoint, and a
resume starts from the newest complete one (stale `.tmp-*` folders are removed on the next start).
`trainer.pt` holds only tensors and plain data, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from xlsr.atomic import fsync, save_torch, write_dir
from xlsr.errors import CheckpointError
from xlsr.interop.native import WEIGHTS_FILE, read_safetensors
from xlsr.train.distributed import unwrap
from xlsr.train.optimizer import LR_SCALED_PARTS

TRAINER_FILE = "trainer.pt"
_UPDATE_DIR = re.compile(r"^update_(\d+)$")


def update_dir_name(update: int) -> str:
    """The folder name of the checkpoint written after `update` updates."""
    return f"update_{update:07d}"


def write_checkpoint(root: Path, update: int, save_model: Callable[[Path], None], trainer_state: dict) -> Path:
    """Write `root/update_N` atomically: `save_model(dir)` writes config.json + model.safetensors."""
    final = root / update_dir_name(update)
    if final.is_dir() and (final / TRAINER_FILE).is_file():
        return final  # this update is already on disk (e.g. saved for `best` just before)

    def write(staging: Path) -> None:
        save_model(staging)
        save_torch(trainer_state, staging / TRAINER_FILE)  # a full disk: an OSError naming it, not torch's traceback

    # An incomplete folder of the same name (no trainer.pt) is replaced.
    return write_dir(final, write, staging=root / f".tmp-{final.name}-{os.getpid()}")


def point_link(root: Path, name: str, target: Path) -> None:
    """Atomically make `root/name` a relative symlink to `target` (a folder inside root)."""
    tmp = root / f".{name}.link-tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp, target_is_directory=True)
    os.replace(tmp, root / name)
    fsync(root)


def update_dirs(root: Path) -> list[tuple[int, Path]]:
    """Complete `update_N` checkpoints under root, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _UPDATE_DIR.match(p.name)
        if m and not p.is_symlink() and (p / TRAINER_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(root: Path, keep_last: int, save_every: int = 0) -> None:
    """Keep the newest `keep_last` checkpoints of the `save_every` grid and the targets of `last`/`best`.

    A checkpoint off the grid exists because a validation found a new best (or a stop saved mid-interval); it
    goes once it is neither `best` nor `last`, so frequent validations never push the periodic checkpoints out
    (with valid_every 100 and save_every 400, update 800 is kept). save_every 0: every checkpoint is on the grid."""
    protected = {(root / n).resolve() for n in ("last", "best") if (root / n).is_symlink()}
    dirs = update_dirs(root)
    grid = [p for u, p in dirs if save_every <= 0 or u % save_every == 0]
    keep = {p.resolve() for p in grid[-max(1, keep_last):]} | protected
    for _, p in dirs:
        if p.resolve() not in keep:
            shutil.rmtree(p, ignore_errors=True)


def clean_staging(root: Path) -> None:
    """Remove half-written checkpoints (and replaced ones set aside) left by a killed run."""
    if root.is_dir():
        for pattern in (".tmp-*", ".*.tmp-*", ".*.old-*"):  # staging; save_checkpoint's; write_dir's set-aside
            for p in root.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)
        for p in root.glob(".*.link-tmp"):
            p.unlink(missing_ok=True)
        for p in root.glob(f"*/.{TRAINER_FILE}.*.tmp"):  # a trainer.pt rewrite killed midway (atomic.write_file's)
            p.unlink(missing_ok=True)


def find_resume_dir(root: Path) -> Path | None:
    """The checkpoint to resume from: the newest complete `update_N` (else `last`, if complete).

    Not `last` first: a run killed between renaming a new checkpoint into place and re-pointing `last` has
    a newer complete checkpoint than `last`, and resuming from it loses nothing.
    """
    dirs = update_dirs(root)
    if dirs:
        return dirs[-1][1]
    last = root / "last"
    return last if last.is_dir() and (last / TRAINER_FILE).is_file() else None


def load_trainer_state(ckpt_dir: Path) -> dict:
    """Read trainer.pt with weights_only=True; a truncated or foreign file is one CheckpointError line."""
    path = ckpt_dir / TRAINER_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a training checkpoint)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        # its first sentence: what follows is torch's advice on torch.load's arguments, which is no help here
        msg = str(exc).strip().splitlines()[0].split(". ")[0][:120] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: corrupt or unreadable training state ({msg})") from None
    if not isinstance(state, dict) or "update" not in state:
        raise CheckpointError(f"{path}: not an xlsr training state (no update count)")
    return state


def earlier_checkpoint_advice(root: Path, ckpt_dir: Path) -> str:
    """What to do about the damaged checkpoint `ckpt_dir` (the newest under `root`): move it away, so that the run
    resumes from the newest one before it, or where there is none, starts afresh."""
    earlier = [p for _, p in update_dirs(root) if p.resolve() != ckpt_dir.resolve()]
    if earlier:
        return (f"move {ckpt_dir} out of {root} (or restore it from a good copy) to resume from {earlier[-1].name}, "
                f"the checkpoint before it")
    return f"restore it from a good copy, or move {ckpt_dir} away to start the run afresh (no checkpoint before it)"


def load_model_weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """The state dict in `model.safetensors`; a missing or truncated file is one CheckpointError line."""
    return read_safetensors(ckpt_dir / WEIGHTS_FILE)


# --- optimizer state (full on every rank, also under FSDP) -----------------------------------------------------
#
# One format for every strategy: torch.distributed.checkpoint's full optimizer state dict, whose per-parameter state
# and parameter groups name each parameter by its place in the model ("wav2vec2.encoder.layers.0.attention.k_proj
# .weight") instead of numbering it. A checkpoint written by one process or by DDP thus resumes under FSDP and the
# other way round. Checkpoints of earlier versions number the parameters when written without FSDP; they still load.

def optimizer_state(net: torch.nn.Module, optimizer: torch.optim.Optimizer, fsdp: bool) -> dict:
    """The optimizer's state dict, parameters named; under FSDP gathered from the shards to full tensors on the CPU
    (collective)."""
    if not fsdp:
        # torch's own state dict, renamed: the same tensors, without importing torch.distributed.checkpoint (~2.5 s)
        # and without its get_optimizer_state_dict, which takes a step with zero gradients on an optimizer that has
        # no state yet (a checkpoint before the first update would then resume with Adam's step count at 1)
        names = _parameter_names(net, optimizer)
        state = optimizer.state_dict()
        return {"state": {names[i]: v for i, v in state["state"].items()},
                "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    # lazy: torch.distributed.checkpoint takes ~2.5 s to import and only FSDP runs need it
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(net, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _parameter_names(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each of the optimizer's parameters in its own order (the order its state dict numbers them): the
    parameter's path in the model inside the DDP and torch.compile wrappers, as torch.distributed.checkpoint names
    it (FSDP2 keeps the model's own paths)."""
    names = {id(p): n for n, p in unwrap(net).named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _named(state: dict, net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A state dict with numbered parameters (an earlier version's, written without FSDP) with each number replaced
    by the name of the parameter at the same place in this optimizer's groups (where torch's load_state_dict would
    put it)."""
    names, current = iter(_parameter_names(net, optimizer)), []
    for group in optimizer.param_groups:
        current.append([next(names) for _ in group["params"]])
    rename = {}
    for saved, now in zip(state["param_groups"], current):
        if len(saved["params"]) != len(now):
            raise ValueError("the groups' sizes differ")
        rename.update(zip(saved["params"], now))
    return {"state": {rename[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [rename[k] for k in g["params"]]} for g in state["param_groups"]]}


# The settings of a parameter group that come from the run's configuration, not from training: on resume the
# configuration's values stand (torch's load_state_dict would bring back the saved ones); `lr` is set every update.
CONFIG_GROUP_SETTINGS = ("weight_decay", "betas", "eps", "lr_scale")


def load_optimizer_state(net: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, fsdp: bool,
                         where: Path | str = "checkpoint") -> None:
    """Inverse of `optimizer_state` (under FSDP each rank keeps its shard of the full state), for a state written
    with or without FSDP. The moments and step counts come from the checkpoint; each group's weight decay, betas and
    eps stay the configuration's (a resume with a changed weight decay trains with it). A checkpoint with other
    parameter groups (a changed head_lr_scale or feature_encoder_lr_scale) is one CheckpointError."""
    configured = [{k: group[k] for k in CONFIG_GROUP_SETTINGS if k in group} for group in optimizer.param_groups]
    if len(state.get("param_groups", [])) != len(optimizer.param_groups):
        raise CheckpointError(_groups_changed(where, state, net, optimizer))
    if not fsdp:
        if _other_parameters(state, net, optimizer):  # groups of the same sizes (torch checks no more)
            raise CheckpointError(_groups_changed(where, state, net, optimizer))
        try:
            # named or numbered alike: torch pairs the saved parameters with this optimizer's by their places in
            # the groups, whatever the saved ones are called
            optimizer.load_state_dict(state)
        except ValueError:  # the groups' sizes differ
            raise CheckpointError(_groups_changed(where, state, net, optimizer)) from None
    else:
        # lazy: as in optimizer_state
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        try:
            if any(isinstance(k, int) for g in state["param_groups"] for k in g["params"]):
                state = _named(state, net, optimizer)  # FSDP finds each parameter's state by its name
            set_optimizer_state_dict(net, optimizer, state, options=StateDictOptions(full_state_dict=True))
        except ValueError:
            raise CheckpointError(_groups_changed(where, state, net, optimizer)) from None
        except (KeyError, RuntimeError) as exc:  # a parameter the checkpoint does not name, or of another shape
            raise CheckpointError(f"{where}: its optimizer state does not fit this model under FSDP "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
                                  ) from None
    for group, settings in zip(optimizer.param_groups, configured):
        group.update(settings)


def _groups_changed(where: Path | str, state: dict, net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """The one-line refusal of a saved optimizer `state` whose parameter groups are not this optimizer's: the
    `*_lr_scale` settings whose recorded and given values differ, as the groups' `lr_scale` and parameter names say
    (a numbered state of an earlier version names no parameters: then the groups' sizes)."""
    saved = state.get("param_groups", [])
    given = _part_scales(optimizer.param_groups, _parameter_names(net, optimizer))
    if all(isinstance(k, str) for g in saved for k in g["params"]):
        recorded = _part_scales(saved, [k for g in saved for k in g["params"]])
        differ = [key for key in given if key in recorded and recorded[key] != given[key]]
        if differ:
            values = "; ".join(f"{key} {recorded[key]:g} there, {given[key]:g} now" for key in differ)
            return (f"{where}: its optimizer's parameter groups differ from this run's ({values}: a value other than 1 "
                    f"gives those parameters groups of their own); give "
                    + " ".join(f"--{key.replace('_', '-')} {recorded[key]:g}" for key in differ)
                    + " to resume, or choose another --out")
    sizes = [", ".join(str(len(g["params"])) for g in groups) for groups in (saved, optimizer.param_groups)]
    return (f"{where}: its optimizer's parameter groups differ from this run's (groups of {sizes[0]} parameters "
            f"there, of {sizes[1]} now); resume with the run's settings, or choose another --out")


def _other_parameters(state: dict, net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """Whether a named `state` puts other parameters in a group than this optimizer does: the groups of two
    `*_lr_scale` settings swapped, say, whose sizes agree, and whose moments torch would pair by place."""
    saved = state.get("param_groups", [])
    if not all(isinstance(k, str) for g in saved for k in g["params"]):
        return False  # numbered (an earlier version's): nothing to compare
    names = iter(_parameter_names(net, optimizer))
    now = [{next(names) for _ in g["params"]} for g in optimizer.param_groups]
    return [set(g["params"]) for g in saved] != now


def _part_scales(groups: list[dict], names: list[str]) -> dict[str, float]:
    """{`*_lr_scale` setting: value} for each part of LR_SCALED_PARTS with parameters in `groups` (whose parameters
    are `names`, in order): the `lr_scale` of the group holding them (1 where none is kept: an earlier version's)."""
    scales, names = {}, iter(names)
    for group in groups:
        for _, name in zip(group["params"], names):
            for fragment, key in LR_SCALED_PARTS:
                if fragment in name:
                    scales.setdefault(key, float(group.get("lr_scale", 1.0)))
    return scales


# --- random-number states as plain data ------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) RNG states as tensors/plain data (weights_only-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def run_finished(run_dir: str | Path, max_updates: int) -> bool:
    """Whether the run folder's newest saved trainer state reached `max_updates` with its validation done (Ctrl-C or
    SIGTERM make the trainer save and return early, a failed validation is saved as pending: a caller must not
    treat either as a finished run)."""
    saved = find_resume_dir(Path(run_dir) / "checkpoints")
    if saved is None:
        return False
    state = load_trainer_state(saved)
    return state["update"] >= max_updates and not state.get("validation_pending", False)
