"""The Trainer's checkpoint half: what a checkpoint holds besides the weights, when it is written, and how a run
(or a group that torchrun restarted after a rank died) picks up from the newest complete one.

Rank 0 alone writes (under FSDP the others take part in gathering the weights); checkpoint.py stages every
checkpoint and renames it into place, so nothing half-written is ever found. A mixin of `Trainer`: the fields it
uses (`update`, `epoch`, `net`, `optimizer`, ...) are the Trainer's, set in `Trainer.__init__` and `_setup`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from xlsr.atomic import fsync, save_torch, write_file
from xlsr.data.shard_loader import every_consumer
from xlsr.errors import CheckpointError
from xlsr.train import checkpoint as ckpt
from xlsr.train import distributed as dist_util
from xlsr.train.monitor import drop_validation_records, trim_log


def task_state(tasks: list[dict], rank: int) -> dict:
    """The saved task state of `rank`; a shard loader's in it with the stream states of every rank, which a resume
    with another number of ranks or workers needs (data/shard_loader.py: `every_consumer`), and any loader's with the
    files a decoder crashed or hung on in every rank (data/worker_crash.py)."""
    state = tasks[rank]
    loaders = [t.get("loader") for t in tasks]
    if all(isinstance(s, dict) and "consumers" in s for s in loaders):
        state = {**state, "loader": {**state["loader"], "consumers": every_consumer(loaders)}}
    crashed = {}  # the files a decoder crashed or hung on in any rank: no rank decodes them again (the same world
    for loader in loaders:  # size reads them on other ranks in later epochs; another one, anywhere)
        if isinstance(loader, dict):
            crashed.update((key, message) for key, message in loader.get("crashed", ()))
    if crashed and isinstance(state.get("loader"), dict):
        state = {**state, "loader": {**state["loader"], "crashed": sorted(crashed.items())}}
    return state


def task_seed(seed: int, rank: int, update: int) -> int:
    """The seed of a task's own generators after a resume with another world size: different for every rank (and
    apart from the global seed `seed + 1000 * rank + update`, so the two generators do not draw the same stream)."""
    return ((seed * 1000 + rank) * 1_000_003 + update + 1) % 2**63




def replace_trainer_state(ckpt_dir: Path, state: dict) -> None:
    """Write a checkpoint's trainer.pt anew, its weights kept: synced, then renamed over the old one."""
    def write(tmp: Path) -> None:
        save_torch(state, tmp)
        fsync(tmp)

    write_file(ckpt_dir / ckpt.TRAINER_FILE, write)
    fsync(ckpt_dir)


class TrainerCheckpoints:
    """Saving and resuming for `Trainer` (train/trainer.py)."""

    def _load_checkpoint(self, model: nn.Module) -> dict | None:
        """Load the newest complete checkpoint's weights into `model`; its trainer state (None for a fresh run)."""
        self.resume_dir = None
        if self.ckpt_root.is_dir():
            if self.info.is_main:
                ckpt.clean_staging(self.ckpt_root)
            dist_util.barrier(self.info)
            self.resume_dir = ckpt.find_resume_dir(self.ckpt_root)
        if self.resume_dir is None:
            if self.info.is_main:
                self._start_logs_afresh()
            return None
        try:
            trainer_state = ckpt.load_trainer_state(self.resume_dir)
            weights = ckpt.load_model_weights(self.resume_dir)
        except CheckpointError as exc:  # damaged after it was written (a copy gone wrong): not resumed past silently
            raise CheckpointError(f"{exc}; {ckpt.earlier_checkpoint_advice(self.ckpt_root, self.resume_dir)}") \
                from None
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.resume_dir}: weights do not fit the model "
                                  f"({str(exc).splitlines()[0][:120]})") from None
        if self.info.is_main:  # a killed run logged updates past its checkpoint; they are trained again
            trim_log(self.run_dir / "log.jsonl", int(trainer_state["update"]))
            if trainer_state.get("validation_pending"):
                drop_validation_records(self.run_dir / "log.jsonl", int(trainer_state["update"]))
            best = self.ckpt_root / "best"
            if trainer_state.get("saved_as_best") and best.resolve() != self.resume_dir.resolve():
                # killed between writing a new best and pointing `best` at it: point it now (pruning would
                # otherwise delete the best checkpoint, which is off the save_every grid)
                ckpt.point_link(self.ckpt_root, "best", self.resume_dir.resolve())
            last = self.ckpt_root / "last"
            if last.resolve() != self.resume_dir.resolve():
                # killed between renaming a checkpoint into place and pointing `last` at it: point it now (a re-run
                # of a finished run saves nothing, so `last` would stay on the older checkpoint for good)
                ckpt.point_link(self.ckpt_root, "last", self.resume_dir.resolve())
        dist_util.barrier(self.info)
        return trainer_state

    def _start_logs_afresh(self) -> None:
        """A fresh start in a folder with logs (a run killed before its first checkpoint): those records are of
        updates that are trained again, and readers of log.jsonl (`xlsr plot`, the demo, released metrics) or of
        the TensorBoard events would show them twice."""
        (self.run_dir / "log.jsonl").unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "tb", ignore_errors=True)

    # --- checkpoints ----------------------------------------------------------------------------------
    def _trainer_state(self, best: bool = False) -> dict:
        """Everything but the weights that an exact resume needs (collective: every rank takes part)."""
        # One gather for everything that differs between ranks. The epoch and its batch count are per rank too: a
        # rank whose planned batch yielded nothing (its files all unreadable) ends its epoch an update before the
        # others, and giving it rank 0's count on resume would rewind it into the epoch it had finished.
        ranks = dist_util.all_gather_objects({"rng": ckpt.capture_rng_state(), "task": self.task.state_dict(),
                                              "position": [self.epoch, self.batches_in_epoch]}, self.info)
        return {
            "version": 1,
            "saved_as_best": best,  # `best` must point here (checked on resume)
            "validation_pending": self.validation_pending,  # this update's validation failed: a resume does it first
            "update": self.update,
            "epoch": self.epoch,  # rank 0's; the resume after a change of world size goes on from these
            "batches_in_epoch": self.batches_in_epoch,
            "positions": [r["position"] for r in ranks],  # [epoch, batches_in_epoch] of each rank
            "best": self.best,
            "nan_skipped": self.nan_skipped,
            "consecutive_nan": self.consecutive_nan,  # a streak of non-finite steps goes on counting after a resume
            "overflow_skipped": self.overflow_skipped,
            "run_totals": dict(self.run_totals),  # the same on every rank: a resume with another world size keeps them
            "run_totals_since": self.run_totals_since,
            "world_size": self.info.world_size,
            "optimizer": ckpt.optimizer_state(self.net, self.optimizer, self.fsdp),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": [r["rng"] for r in ranks],  # one per rank
            "task": [r["task"] for r in ranks],  # one per rank
            "config": json.loads(json.dumps(self.resolved_config, default=str)),
            "cwd": self.started_in,  # where the config's relative paths start (a resume may be run from elsewhere)
            "valid_fingerprint": self.task.validation_fingerprint(),  # what `best` was measured on
        }

    def _load_trainer_state(self, state: dict) -> None:
        self.update = int(state["update"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.best = state.get("best")
        self.nan_skipped = int(state.get("nan_skipped", 0))
        self.consecutive_nan = int(state.get("consecutive_nan", 0))  # absent in checkpoints of earlier versions
        self.overflow_skipped = int(state.get("overflow_skipped", 0))
        self.validation_pending = bool(state.get("validation_pending", False))  # absent in earlier versions: none
        if "run_totals" in state:
            self.run_totals = {str(k): float(v) for k, v in state["run_totals"].items()}
            self.run_totals_since = int(state.get("run_totals_since", 0))
        else:  # a checkpoint of an earlier version: counted from here
            self.run_totals, self.run_totals_since = {}, self.update
        ckpt.load_optimizer_state(self.net, self.optimizer, state["optimizer"], self.fsdp, where=self.resume_dir)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        rng, tasks = state.get("rng") or [], state.get("task") or [{}]
        if len(rng) == self.info.world_size and len(tasks) == self.info.world_size:
            ckpt.restore_rng_state(rng[self.info.rank])
            self.task.load_state_dict(task_state(tasks, self.info.rank))
            positions = state.get("positions")  # absent in checkpoints of earlier versions: rank 0's for all
            if positions is not None and len(positions) == self.info.world_size:
                self.epoch, self.batches_in_epoch = (int(v) for v in positions[self.info.rank])
        else:  # another world size: exact continuation is impossible, keep going with fresh seeds
            self.monitor_note = f"world size changed ({len(rng)} -> {self.info.world_size}); resume is not exact"
            self.task.load_state_dict(task_state(tasks, 0))
            ckpt.seed_everything(self.cfg.seed + 1000 * self.info.rank + self.update)
            # rank 0's task state came with its own generators (masks, negatives, Gumbel noise): reseeded per rank, or
            # every rank would draw rank 0's masks from here on
            self.task.reseed(task_seed(self.cfg.seed, self.info.rank, self.update))
        self._last_saved = self.update
        if self.info.is_main:  # the pruning that a kill before it left undone, once this run's settings are accepted
            ckpt.prune_checkpoints(self.ckpt_root, self.cfg.keep_last, self.cfg.save_every)

    def _model_for_saving(self) -> nn.Module | None:
        """The full model on rank 0 (gathered from shards under FSDP); None on other ranks."""
        if not self.fsdp:
            return self.model if self.info.is_main else None
        full = dist_util.full_state_dict(self.net)  # collective
        if not self.info.is_main:
            return None
        if getattr(self, "_cpu_copy", None) is None:
            # its weights (random or `--init`'s) are replaced right below; drawn from a fork of the random state: the
            # first save after each start builds it, at another update in a resumed run than in a straight one, and
            # the draws would shift the dropout and masks of every update after it (the run would not resume exactly)
            with torch.random.fork_rng(devices=[]):
                self._cpu_copy = self.task.build_model()
        self._cpu_copy.load_state_dict(full)
        return self._cpu_copy

    def _save(self, best: bool = False, replace: bool = False) -> None:
        """Write update_N (unless already written; `replace`: its trainer state anew), point `last` (and `best`),
        prune old ones."""
        if self._last_saved == self.update and not (best or replace) and (self.ckpt_root / "last").exists():
            return
        state = self._trainer_state(best)  # collective: every rank takes part
        model = self._model_for_saving()
        if self.info.is_main:
            target = ckpt.write_checkpoint(self.ckpt_root, self.update,
                                           lambda d: self.task.save_model(d, model), state)
            if replace:  # written when this update's validation failed (trainer.py): the same weights, a new state
                replace_trainer_state(target, state)
            ckpt.point_link(self.ckpt_root, "last", target)
            if best:
                ckpt.point_link(self.ckpt_root, "best", target)
            ckpt.prune_checkpoints(self.ckpt_root, self.cfg.keep_last, self.cfg.save_every)
        self._last_saved = self.update
        dist_util.barrier(self.info)

