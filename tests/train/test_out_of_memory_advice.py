"""The out-of-memory line names what to change for where it happened: the batch-size option (and --update-freq to
keep the batch) for a training step, the batch-size option alone for validation, sharding for the optimizer's state;
activation checkpointing only where it is off and a backward follows; bf16 only on a GPU in fp32. The CPU allocator's
failure counts as out of memory; any other error passes through untouched."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from xlsr.devices import is_out_of_memory
from xlsr.train.out_of_memory import TrainingError, out_of_memory_advice

CPU_ALLOCATOR = "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to " \
                "allocate 21474836480 bytes. Error code 12 (Cannot allocate memory)"


def _trainer(device="cpu", precision="fp32", checkpointing=False, option="--max-tokens (now 64000)"):
    return SimpleNamespace(cfg=SimpleNamespace(update_freq=3, activation_checkpointing=checkpointing, precision=precision),
                           task=SimpleNamespace(batch_size_option=lambda: option), device=torch.device(device),
                           run_dir=Path("runs/pt"), update=7)


def _advice(trainer, where="train", batch=None, error=None) -> str:
    batch = (torch.zeros(2, 16000), torch.zeros(2, 50, dtype=torch.long)) if batch is None else batch
    with pytest.raises(TrainingError) as caught:
        with out_of_memory_advice(trainer, batch, where=where):
            raise error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return str(caught.value)


@pytest.mark.parametrize("trainer, where, line", [
    (_trainer(), "train", "runs/pt: out of cpu memory at update 7 on a batch of 2x16000 samples; lower --max-tokens "
                          "(now 64000) and raise --update-freq (now 3) to keep the batch size; add "
                          "--activation-checkpointing true"),
    (_trainer(), "valid", "runs/pt: out of cpu memory at update 7 validating a batch of 2x16000 samples; lower "
                          "--max-tokens (now 64000)"),
    (_trainer(), "optimizer", "runs/pt: out of cpu memory at update 7 in the optimizer step; the optimizer's state "
                              "does not fit beside the model: shard it over more processes (torchrun with "
                              "--distributed fsdp) or train a smaller model"),
    (_trainer(checkpointing=True), "train", "runs/pt: out of cpu memory at update 7 on a batch of 2x16000 samples; "
                                            "lower --max-tokens (now 64000) and raise --update-freq (now 3) to keep "
                                            "the batch size"),
    (_trainer("cuda"), "valid", "runs/pt: out of cuda memory at update 7 validating a batch of 2x16000 samples; "
                                "lower --max-tokens (now 64000); use --precision bf16"),
    (_trainer("cuda", precision="bf16", checkpointing=True, option=None), "train",
     "runs/pt: out of cuda memory at update 7 on a batch of 2x16000 samples; use smaller batches"),
], ids=["train", "valid", "optimizer", "checkpointing-on", "gpu-fp32", "nothing-to-name"])
def test_the_advice_names_what_to_change_for_where_memory_ran_out(trainer, where, line):
    assert _advice(trainer, where) == line


def test_the_cpu_allocators_failure_is_out_of_memory_too():
    assert is_out_of_memory(RuntimeError(CPU_ALLOCATOR))
    assert "out of cpu memory at update 7" in _advice(_trainer(), error=RuntimeError(CPU_ALLOCATOR))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))


def test_another_error_passes_through_as_it_was():
    error = RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")
    with pytest.raises(RuntimeError) as caught:
        with out_of_memory_advice(_trainer(), None):
            raise error
    assert caught.value is error


def test_the_batch_shape_is_that_of_its_first_tensor():
    batch = SimpleNamespace(names=["a", "b"], waveforms=torch.zeros(4, 8000), labels=torch.zeros(4, 9))
    line = _advice(_trainer(), batch=(batch.names, batch.waveforms, batch.labels))
    assert "on a batch of 4x8000 samples" in line


def test_a_validation_batch_of_one_utterance_is_advised_to_cut_it_not_to_lower_the_batch_size():
    """(one utterance is alone in its batch whatever --max-tokens says: lowering it cannot help)"""
    line = _advice(_trainer(), "valid", batch=(torch.zeros(1, 57_600_000), torch.zeros(1, 900, dtype=torch.long)))
    assert line == ("runs/pt: out of cpu memory at update 7 validating a batch of 1x57600000 samples; this dev "
                    "utterance alone does not fit: cut such recordings into shorter utterances, or leave them out of "
                    "the dev manifests")
