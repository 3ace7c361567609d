"""A tiny regression Task for testing the generic Trainer without the wav2vec 2.0 model or audio."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xlsr.train.task import Task


class ToyConfig:
    def __init__(self, dim: int, dropout: float):
        self.dim, self.dropout = dim, dropout

    def to_dict(self) -> dict:
        return {"dim": self.dim, "dropout": self.dropout}


class ToyModel(nn.Module):
    def __init__(self, dim: int = 4, dropout: float = 0.0):
        super().__init__()
        self.config = ToyConfig(dim, dropout)
        self.norm = nn.LayerNorm(dim)
        self.hidden = nn.Linear(dim, 8)
        self.out = nn.Linear(8, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.hidden(self.norm(x))))).squeeze(-1)


class ToyTask(Task):
    """y = x·w + noise; batch b of epoch e holds `rows` rows; under W ranks rank r gets rows r::W."""

    def __init__(self, *, dim: int = 4, dropout: float = 0.0, batches_per_epoch: int = 5, rows: int = 5,
                 nan_at: set[int] = frozenset(), stop_at: int | None = None, seed: int = 0):
        self.dim, self.dropout, self.batches_per_epoch, self.rows = dim, dropout, batches_per_epoch, rows
        self.nan_at, self.stop_at, self.seed = set(nan_at), stop_at, seed
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batches_per_epoch * rows, dim, generator=g)
        self.y = self.x @ torch.randn(dim, generator=g) + 0.1 * torch.randn(len(self.x), generator=g)
        self.steps = 0

    def build_model(self) -> nn.Module:
        return ToyModel(self.dim, self.dropout)

    def train_batches(self, epoch: int, skip: int = 0):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        rank, world = self.info.rank, self.info.world_size
        for b in range(skip, self.batches_per_epoch):
            idx = order[b * self.rows:(b + 1) * self.rows][rank::world]
            yield (self.x[idx], self.y[idx], torch.tensor(epoch * self.batches_per_epoch + b))

    def train_step(self, model, batch):
        x, y, index = batch
        self.steps += 1
        if self.stop_at is not None and self.steps == self.stop_at:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during this step
        loss = ((model(x) - y) ** 2).sum()
        if int(index) in self.nan_at:
            loss = loss * float("nan")
        return loss, {"sample_size": len(y), "loss": loss.item() / len(y)}

    def valid_sets(self):
        return {"toy": [(self.x[:10], self.y[:10], torch.tensor(-1))]}

    def valid_step(self, model, batch):
        x, y, _ = batch
        return {"loss": ((model(x) - y) ** 2).mean().item(), "sample_size": len(y)}

    def save_model(self, directory: Path, model: nn.Module) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        cfg = {"format": "xlsr", "version": 1, "architecture": type(model).__name__,
               "model": model.config.to_dict(), "vocab": None, "metadata": {}}
        (directory / "config.json").write_text(json.dumps(cfg))
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(directory / "model.safetensors"))


def load_weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt_dir / "model.safetensors"))


def numbered_optimizer_state(run) -> None:
    """Rewrite the last checkpoint's optimizer state as versions before named states wrote it without FSDP: torch's
    own state dict, each parameter numbered by its place in the groups."""
    path = Path(run) / "checkpoints" / "last" / "trainer.pt"
    state = torch.load(path, weights_only=True)
    named = state["optimizer"]
    number = {name: i for i, name in enumerate(n for g in named["param_groups"] for n in g["params"])}
    state["optimizer"] = {"state": {number[n]: v for n, v in named["state"].items()},
                          "param_groups": [{**g, "params": [number[n] for n in g["params"]]}
                                           for g in named["param_groups"]]}
    torch.save(state, path)


class HeadToyModel(torch.nn.Module):
    """The toy model with an `lm_head`, which head_lr_scale != 1 puts in parameter groups of its own."""

    def __init__(self):
        super().__init__()
        self.body = ToyTask().build_model()
        self.config = self.body.config
        self.lm_head = torch.nn.Linear(1, 1)

    def forward(self, x):
        return self.lm_head(self.body(x)[:, None])[:, 0]


class HeadToyTask(ToyTask):
    def build_model(self):
        return HeadToyModel()
