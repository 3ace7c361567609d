"""Process groups and model wrapping for data-parallel training launched by `torchrun`.

`torchrun --nproc_per_node=N -m xlsr.cli.main pretrain ...` sets RANK/WORLD_SIZE/LOCAL_RANK; without
them training runs in one process. Backend: NCCL when CUDA is used, gloo on CPU. On CPU every rank
runs `torch.set_num_threads(cores // local_world_size)` (at least 1) so ranks do not fight over cores.
Multi-node: `torchrun --nnodes=2 --node_rank=R --rdzv_endpoint=HOST:PORT ...`; nothing else changes.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from xlsr.cores import available_cores
from xlsr.devices import pick_device


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if launched by torchrun; otherwise a single-process DistInfo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        else:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
            torch.set_num_threads(max(1, available_cores() // local_world))
        if not dist.is_initialized():
            # On GPUs, NCCL for CUDA tensors and gloo beside it for the CPU ones: the trainer all-reduces its per-update
            # flags (sample size, non-finite count, stop request: host numbers already) as a CPU tensor, which an
            # NCCL-only group refuses. Not yet run on several GPUs (none lent so far).
            dist.init_process_group("cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def wrap_model(model: nn.Module, info: DistInfo, strategy: str = "ddp", *, unused_parameters: bool = False) -> nn.Module:
    """DDP (or FSDP for the 1b/2b presets) around `model`; the model itself when not distributed.

    DDP runs with find_unused_parameters=False: LayerDrop skips the same layers on every rank (the
    trainer seeds its decision with the update count) but a skipped layer still has no gradient, so
    those layers are found by DDP's unused-parameter check only if layerdrop > 0 — we enable it then,
    and when the task says some parameters sit out whole updates (`unused_parameters`, e.g. a frozen
    Transformer during the first fine-tuning updates).
    """
    if not info.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import (
            fully_shard,  # lazy: torch.distributed.fsdp takes ~2 s to import and only FSDP runs need it
        )

        # Shard each Transformer layer separately, then the rest; parameters are gathered per layer.
        for module in model.modules():
            if type(module).__name__ == "TransformerLayer":
                fully_shard(module)
        fully_shard(model)
        return model
    layerdrop = any(getattr(m, "layerdrop", 0.0) > 0 for m in model.modules())
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=layerdrop or unused_parameters)


def reshard(model: nn.Module) -> None:
    """Put every FSDP2 module back into its sharded parameters.

    After a forward pass without backward (validation), the root module keeps its gathered
    parameters registered; the optimizer holds the sharded ones, so the next step and the optimizer
    state dict would no longer see the model's own parameters.
    """
    from torch.distributed.fsdp import (
        FSDPModule,  # lazy: torch.distributed.fsdp takes ~2 s to import and only FSDP runs need it
    )

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU, gathered from the FSDP shards (collective: every rank calls it)."""
    # lazy: torch.distributed.checkpoint takes ~2.5 s to import and only FSDP runs need it
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks in place (identity in one process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order (pickled through the process group)."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    """Rank 0's `obj` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.distributed:
        dist.barrier()


SHUTDOWN_TIMEOUT_S = 120.0


def shutdown(info: DistInfo, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Leave the process group; a rank stuck there for `timeout_s` prints its threads' stacks and exits (status 1).

    Leaving comes after the last checkpoint, so nothing is lost by ending a rank that hangs in the backend's
    teardown (seen once in gloo, in a forked test rank); without the watchdog such a rank would hold its job and
    the machine until an outside limit killed it. The watchdog is C-level (`faulthandler`), so it fires even if
    the teardown holds the interpreter lock.
    """
    if not (info.distributed and dist.is_initialized()):
        return
    faulthandler.dump_traceback_later(timeout_s, exit=True, file=sys.stderr)
    try:
        dist.destroy_process_group()
    finally:
        faulthandler.cancel_dump_traceback_later()
