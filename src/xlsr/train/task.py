"""The small interface between the generic Trainer and a training objective (pretrain, finetune).

A Task owns what differs between objectives: the model's construction, its data, one step's loss and
logs (and which of them the progress bar shows), health warnings, and what is saved with a checkpoint.
The Trainer owns everything the tasks share: the run folder (its guard, config.yaml), schedules, LayerDrop
seeding, weight decay, precision, accumulation, DDP/FSDP, clipping, NaN skipping, logging, throughput,
checkpoints and resume. The Trainer never reads a task's configuration or batch fields.

Loss convention: `train_step` returns `(loss, logs)`. If `logs` holds `"sample_size"` (e.g. the number
of masked frames), `loss` is a *sum* over that many units and the Trainer divides the gradient by the
total sample size over all micro-batches and ranks (so 2 ranks × B equals 1 rank × 2B exactly).
Without it, `loss` is a mean and counts as one unit. Other `logs` entries are floats (or 0-d tensors)
that are averaged over the update weighted by sample size, except keys listed in `summed_logs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xlsr.interop.native import save_checkpoint


class Task:
    """Base class: override the methods marked `required`; the others have working defaults."""

    #: the validation log entry that picks `checkpoints/best` (lower is better unless told otherwise)
    best_metric: str = "loss"
    best_lower_is_better: bool = True
    #: the config keys that say what validation measures on: a resume that changes one chooses `best` anew
    validation_data_keys: tuple[str, ...] = ()
    #: log keys that are added (not averaged) over micro-batches, e.g. counts
    summed_logs: tuple[str, ...] = ("sample_size",)
    #: summed log keys the Trainer also adds up over the whole run (kept in checkpoints; a train record holds their
    #: run totals), e.g. the audio trained on per language; the same keys on every rank
    counted_logs: tuple[str, ...] = ()
    #: some parameters get no gradient in some updates (e.g. frozen for a while): DDP must look for them
    has_unused_parameters: bool = False
    #: train log entries shown on the progress bar (the Trainer adds the learning rate and the throughput)
    progress_keys: tuple[str, ...] = ("loss",)
    #: validate once before the first update of a fresh run too (e.g. to measure the model at initialisation)
    validate_at_start: bool = False

    # --- required ------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """required: a fresh model (random or `--init` weights) on CPU.

        Under FSDP rank 0 calls it again for the copy it saves from, then loads the run's weights into that copy:
        only the first build needs `--init`'s weights, which a task may let go of then."""
        raise NotImplementedError

    def train_batches(self, epoch: int, skip: int = 0) -> Iterable:
        """required: this rank's batches of epoch `epoch` (deterministic given epoch), minus the first `skip`.

        `skip` > 0 only when resuming mid-epoch; skip cheaply (without loading audio) where possible.
        """
        raise NotImplementedError

    def train_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        """required: forward one micro-batch in train mode -> (loss to backprop, logs)."""
        raise NotImplementedError

    # --- optional ------------------------------------------------------------------------------
    def setup(self, info) -> None:
        """Called first with the `distributed.DistInfo` (rank, world_size, device) of this process."""
        self.info = info

    def valid_sets(self) -> dict[str, Iterable]:
        """Validation batches per subset (e.g. per language); empty means no validation."""
        return {}

    def valid_step(self, model: nn.Module, batch: Any) -> dict:
        """Forward one validation batch in eval mode -> logs (with "sample_size" as weight)."""
        raise NotImplementedError

    def valid_end(self, model: nn.Module, update: int) -> dict:
        """Logs over the whole validation just run (all subsets), added to the overall `valid` record.

        For figures that a weighted mean of per-batch logs cannot give, e.g. statistics of frames pooled over
        every batch. Called on every rank, in eval mode and without gradients, with the model validation used.
        """
        return {}

    def describe(self) -> str:
        """Lines printed once when training starts (e.g. the data summary); empty for none."""
        return ""

    def batch_to_device(self, batch: Any, device: torch.device) -> Any:
        """Move a batch to `device` (default: tensors inside dataclasses, dicts, tuples)."""
        return _to_device(batch, device)

    def batch_samples(self, batch: Any) -> int:
        """Audio samples in a batch (the rows' `lengths`), for the throughput figure; 0 for a batch without audio."""
        lengths = getattr(batch, "lengths", None)
        return int(lengths.sum()) if lengths is not None else 0

    def batch_size_option(self) -> str | None:
        """The option that sets the batch size, with its value (e.g. "--max-tokens (now 160000)"), for advice."""
        return None

    def reports(self) -> dict[str, dict]:
        """JSON files written into the run folder when training starts, by name (e.g. what the data held)."""
        return {}

    def data_totals(self) -> dict[str, int]:
        """The training data's running counts to log (train/monitor.py's RUNNING_TOTALS: bad audio files skipped so
        far); each rank gives its own, and the Trainer logs their sum."""
        return {}

    def on_update_start(self, model: nn.Module, update: int) -> dict:
        """Called before each update with the unwrapped model, e.g. to set the Gumbel temperature.

        Must behave identically on every rank. Returns values to log. (The Trainer seeds LayerDrop itself.)
        """
        return {}

    def validation_fingerprint(self) -> str | None:
        """A hash of what validation measures on (its utterances and references, as kept), recorded with each
        checkpoint: a resume whose validation data differ, the same paths or not (a manifest edited in place, another
        --max-tokens leaving other long utterances out), chooses `best` anew. None: not known (the paths alone,
        `validation_data_keys`, then decide)."""
        return None

    def closing_report(self, totals: dict[str, float], since: int) -> str:
        """Lines printed when training ends (rank 0), from the run totals of `counted_logs` counted since update
        `since` (0 unless the run resumed from a checkpoint of a version that did not keep them); empty for none."""
        return ""

    def health_warnings(self, logs: dict, update: int) -> list[str]:
        """Warnings about the training state from an update's logs (codebook collapse, chance level)."""
        return []

    def save_model(self, directory: Path, model: nn.Module) -> None:
        """Write the model as our checkpoint dir (config.json + model.safetensors); add vocab/metadata here."""
        save_checkpoint(directory, model)

    def on_fit_end(self, run_dir: Path) -> None:
        """Write what the task makes from its checkpoints once the loop is over (an export), e.g. RUN/adapter/.

        Called by rank 0 alone, while it still holds the run folder's lock (so no second run writes beside it),
        after a finished run, a stopped one and a re-run of a finished one alike; not after an error."""

    def state_dict(self) -> dict:
        """Task state for exact resume (plain data and tensors only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`."""

    def reseed(self, seed: int) -> None:
        """Seed the task's own random generators (those its `state_dict` saves) from `seed`.

        Called after `load_state_dict` when a run resumes with another number of processes: every rank then loads
        rank 0's state, and without a reseed would draw rank 0's random numbers. `seed` differs between ranks.
        """


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _to_device(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj
