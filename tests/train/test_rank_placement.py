"""Where each rank of a torchrun job runs: --device auto/cuda gives rank R of a node its own GPU (LOCAL_RANK), an
explicit cuda:N stays as given; on CPU the node's cores are shared between the node's ranks (LOCAL_WORLD_SIZE), not
between all ranks of the job. No GPU needed: CUDA's availability is played, the process group taken as joined."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from xlsr.devices import pick_device
from xlsr.train.distributed import DistInfo, init_distributed


@pytest.fixture
def as_rank(monkeypatch):
    """Environment of one torchrun rank; the process group counts as joined, thread settings are recorded."""
    threads = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(torch, "set_num_threads", threads.append)

    def rank(rank: int, world: int, local_rank: int, local_world: int):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))
        return threads
    return rank


@pytest.fixture
def gpus(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_auto_and_cuda_give_each_rank_its_local_gpu(gpus):
    assert pick_device("auto") == torch.device("cuda", 0)
    assert pick_device("auto", 3) == torch.device("cuda", 3)
    assert pick_device("cuda", 2) == torch.device("cuda", 2)
    assert pick_device("cuda:1", 2) == torch.device("cuda", 1)  # asked for by index: as given
    assert pick_device("cpu", 2) == torch.device("cpu")


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_rank_on_the_second_node_uses_its_local_gpu(as_rank, gpus, device):
    as_rank(rank=5, world=8, local_rank=1, local_world=4)
    info = init_distributed(device)
    assert info == DistInfo(rank=5, world_size=8, local_rank=1, device=torch.device("cuda", 1))
    assert gpus == [torch.device("cuda", 1)]


@pytest.mark.parametrize("world, local_world, cores, threads", [
    (2, 2, 8, 4),  # one node, two ranks: half the cores each
    (4, 2, 8, 4),  # two nodes of two: the node's cores, not the job's, are shared
    (2, 1, 8, 8),  # two nodes of one rank each: all of its node's cores
    (4, 4, 2, 1),  # more ranks than cores: one thread each, never none
])
def test_cpu_ranks_share_their_nodes_cores(as_rank, monkeypatch, world, local_world, cores, threads):
    # the cores this process may use (its affinity mask: a cluster job's share), not the machine's count
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4 * cores)
    recorded = as_rank(rank=1, world=world, local_rank=1 % local_world, local_world=local_world)
    info = init_distributed("cpu")
    assert info.device == torch.device("cpu") and info.world_size == world
    assert recorded == [threads]
