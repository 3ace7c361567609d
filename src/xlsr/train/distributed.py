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
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from xlsr.cores import available_cores
from xlsr.devices import pick_device
from xlsr.errors import XlsrError

# what to do about a job's environment that cannot be right
LAUNCH_ADVICE = ("start the processes with torchrun (README.md, 'Multi-GPU and multi-node'), "
                 "or unset WORLD_SIZE and RANK to train in one process")
JOIN_NOTE_SECONDS = 20.0  # joining the group takes longer than this: say what it waits for


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
    world_size, rank, local_rank = job_position()
    dev = pick_device(device, local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        else:
            local_world = _env_int("LOCAL_WORLD_SIZE", world_size, least=1)
            torch.set_num_threads(max(1, available_cores() // local_world))
        if not dist.is_initialized():
            # On GPUs, NCCL for CUDA tensors and gloo beside it for the CPU ones: the trainer all-reduces its per-update
            # flags (sample size, non-finite count, stop request: host numbers already) as a CPU tensor, which an
            # NCCL-only group refuses. Not yet run on several GPUs (none lent so far).
            _join_group("cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo", rank, world_size)
    return DistInfo(rank, world_size, local_rank, dev)


def job_position() -> tuple[int, int, int]:
    """(WORLD_SIZE, RANK, LOCAL_RANK) from the environment (torchrun's), each checked: one line naming the variable
    if it cannot be right, instead of a traceback or a rank that waits for peers no one started."""
    world_size = _env_int("WORLD_SIZE", 1, least=1)
    if world_size > 1 and "RANK" not in os.environ:
        raise XlsrError(f"WORLD_SIZE={world_size} is set in the environment but RANK is not: {LAUNCH_ADVICE}")
    rank = _env_int("RANK", 0, least=0)
    if rank > 0 and "WORLD_SIZE" not in os.environ:
        raise XlsrError(f"RANK={rank} is set in the environment but WORLD_SIZE is not: {LAUNCH_ADVICE}")
    if rank >= world_size:
        raise XlsrError(f"RANK={rank} in the environment is outside WORLD_SIZE={world_size} "
                        f"(ranks 0 to {world_size - 1}): {LAUNCH_ADVICE}")
    return world_size, rank, _env_int("LOCAL_RANK", 0, least=0)


def _env_int(name: str, default: int, least: int) -> int:
    """The whole number `name` in the environment (`default` when unset), at least `least`; else one line."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise XlsrError(f"{name}={text!r} in the environment is not a whole number: {LAUNCH_ADVICE}") from None
    if value < least:
        raise XlsrError(f"{name}={value} in the environment is below {least}: {LAUNCH_ADVICE}")
    return value


def _join_group(backend: str, rank: int, world_size: int) -> None:
    """init_process_group, saying once what it waits for when that takes long: a rank started by hand (WORLD_SIZE
    and RANK set, its peers never started) would otherwise wait in silence for the rendezvous timeout (30 min)."""
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise XlsrError(f"WORLD_SIZE={world_size} and RANK={rank} are set in the environment but "
                        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: {LAUNCH_ADVICE}")
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    note = threading.Timer(JOIN_NOTE_SECONDS, lambda: print(
        f"xlsr: rank {rank} has waited {JOIN_NOTE_SECONDS:.0f} s for the other processes of WORLD_SIZE={world_size} "
        f"at {where} (MASTER_ADDR:MASTER_PORT); if no other was started, end this one (kill {os.getpid()}: it does not "
        f"see Ctrl-C while it waits) and {LAUNCH_ADVICE}",
        file=sys.stderr, flush=True))
    note.daemon = True
    note.start()
    try:
        dist.init_process_group(backend)
    finally:
        note.cancel()


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
