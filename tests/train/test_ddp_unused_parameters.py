"""DDP over 2 gloo ranks trains a model some of whose parameters get no gradient in an update: those a task says
sit out (a frozen Transformer in fine-tuning's first updates) and layers LayerDrop skips. With DDP's default
(find_unused_parameters=False) the second update would fail waiting for their gradients."""

import os

import torch
from torch import nn

from xlsr.train.distributed import init_distributed, shutdown, wrap_model

from . import _ranks


class _Skipping(nn.Module):
    """Two layers; the second runs only when asked (as a frozen or dropped layer that yields no gradient)."""

    def __init__(self, layerdrop: float = 0.0):
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)
        self.second.layerdrop = layerdrop

    def forward(self, x, use_second: bool):
        x = self.first(x)
        return self.second(x) if use_second else x


def _rank(rank: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        torch.manual_seed(0)
        for model in (wrap_model(_Skipping(), info, unused_parameters=True),  # the task says so
                      wrap_model(_Skipping(layerdrop=0.1), info)):  # a layer with LayerDrop
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            for update in range(3):
                optimizer.zero_grad()
                model(torch.randn(3, 4), use_second=update == 2).sum().backward()
                optimizer.step()
            weights = [p.detach().clone() for p in model.parameters()]
            gathered = [None, None]
            torch.distributed.all_gather_object(gathered, weights)
            for a, b in zip(*gathered):
                assert torch.equal(a, b)  # the ranks stayed in step
    finally:
        shutdown(info)


def test_parameters_without_a_gradient_in_an_update_do_not_stop_ddp():
    _ranks.run(_rank, (_ranks.free_ports(1)[0],))
