"""Activation checkpointing under DDP and FSDP with LayerDrop on (transformers#30113): it trains, with the gradient
of one process on the combined batch."""

import os

import pytest
import torch

from . import _ranks
from .test_fsdp import _free_port, layerdrop_model


def _checkpointing_model():
    model, _ = layerdrop_model(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0)
    return model


def _checkpointing_worker(rank: int, world: int, port: int, out: str, strategy: str) -> None:
    from xlsr.train.distributed import init_distributed, shutdown, wrap_model

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    model = _checkpointing_model()
    model.set_activation_checkpointing(True)
    net = wrap_model(model, info, strategy)
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))[rank : rank + 1]
    net(x, torch.tensor([4000])).last_hidden_state.pow(2).mean().backward()
    grads = {}
    for name, p in net.named_parameters():
        g = p.grad
        if g is not None and hasattr(g, "full_tensor"):
            g = g.full_tensor()
        grads[name.removeprefix("module.")] = None if g is None else g.detach().clone()
    torch.save(grads, f"{out}/{rank}.pt")
    shutdown(info)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_activation_checkpointing_with_layerdrop_matches_one_process(tmp_path, strategy):
    """The LayerDrop x checkpointing x data-parallel combination (transformers#30113) trains, with the right gradient."""
    model = _checkpointing_model()
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))
    model(x, torch.tensor([4000, 4000])).last_hidden_state.pow(2).mean().backward()
    want = {n: p.grad for n, p in model.named_parameters()}
    _ranks.run(_checkpointing_worker, (2, _free_port(), str(tmp_path), strategy))
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert got.keys() == want.keys()
        for name, g in want.items():
            if g is None or not g.any():  # a skipped layer: zero or no gradient on either side
                assert got[name] is None or not got[name].any(), name
                continue
            torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)
