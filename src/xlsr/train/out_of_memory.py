"""An out-of-memory error in a training step, turned into one line of advice (TrainingError)."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import torch

from xlsr.devices import is_out_of_memory
from xlsr.errors import XlsrError


class TrainingError(XlsrError):
    """Training cannot go on (out of memory, too many non-finite steps in a row); the message says what to change."""


@contextmanager
def out_of_memory_advice(trainer, batch, where: str = "train"):
    """Turn an out-of-memory error into one line that says what to change (the last checkpoint is kept: the same
    command with the change resumes from it). `trainer`: the Trainer; `where`: "train" (a forward/backward of
    `batch`), "valid" (a validation batch) or "optimizer" (the optimizer step, whose first call allocates its
    state: two values per parameter for Adam)."""
    try:
        yield
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_out_of_memory(exc):
            raise
        cfg = trainer.cfg
        tips = []
        option = trainer.task.batch_size_option()
        if where == "optimizer":
            tips.append("the optimizer's state does not fit beside the model: shard it over more processes "
                        "(torchrun with --distributed fsdp) or train a smaller model")
        elif where == "valid" and _batch_shape(batch).startswith("1x"):  # one utterance alone: no batch to lower
            tips.append("this dev utterance alone does not fit: cut such recordings into shorter utterances, or leave "
                        "them out of the dev manifests")
        elif option:
            keep = f" and raise --update-freq (now {cfg.update_freq}) to keep the batch size" if where == "train" else ""
            tips.append(f"lower {option}{keep}")
        if where == "train" and not cfg.activation_checkpointing:
            tips.append("add --activation-checkpointing true")
        if cfg.precision == "fp32" and trainer.device.type == "cuda":
            tips.append("use --precision bf16")
        place = {"train": f"on a batch of {_batch_shape(batch)} samples",
                 "valid": f"validating a batch of {_batch_shape(batch)} samples",
                 "optimizer": "in the optimizer step"}[where]
        raise TrainingError(f"{trainer.run_dir}: out of {trainer.device.type} memory at update {trainer.update} "
                            f"{place}; {'; '.join(tips) or 'use smaller batches'}") from None


def _batch_shape(batch) -> str:
    """"BxS" of a batch's first tensor (the waveforms of an audio batch), "?" without one."""
    items = [getattr(batch, f.name) for f in dataclasses.fields(batch)] if dataclasses.is_dataclass(batch) else \
        list(batch) if isinstance(batch, tuple | list) else [batch]
    shape = next((t.shape for t in items if isinstance(t, torch.Tensor)), None)
    return "x".join(str(n) for n in shape) if shape else "?"
