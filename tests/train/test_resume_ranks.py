"""Resuming a multi-process run: each rank goes on from its own place in its epoch, and a resume with another number
of processes gives every rank random draws of its own (2 gloo processes on CPU)."""

import os
from pathlib import Path

import torch

from xlsr.train import checkpoint as ckpt
from xlsr.train.trainer import Trainer, TrainerConfig

from . import _ranks
from ._toy import ToyTask, load_weights


def _cfg(out, max_updates: int) -> TrainerConfig:
    return TrainerConfig(out=str(out), max_updates=max_updates, lr=1e-2, lr_schedule="constant", warmup_updates=0,
                         device="cpu", log_every=1, valid_every=0, save_every=0, progress=False, tensorboard=False)


def _join(rank: int, world: int, port: int) -> None:
    # each fit makes and destroys its process group: a fresh rendezvous port per fit (see test_fsdp.py)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)


class UnevenToyTask(ToyTask):
    """Rank 1's epoch 0 has one batch fewer, as when every file of one of its planned batches is unreadable: it
    reaches the end of epoch 0 one update before rank 0."""

    def train_batches(self, epoch: int, skip: int = 0):
        batches = list(super().train_batches(epoch))
        if self.info.rank == 1 and epoch == 0:
            del batches[2]
        yield from batches[skip:]


def _uneven_worker(rank: int, world: int, ports: list[int], root: str) -> None:
    for port, (name, max_updates) in zip(ports, [("straight", 8), ("split", 5), ("split", 8)]):
        _join(rank, world, port)
        Trainer(_cfg(Path(root) / name, max_updates), UnevenToyTask()).fit()


def test_each_rank_resumes_from_its_own_place_in_its_epoch(tmp_path):
    _ranks.run(_uneven_worker, (2, _ranks.free_ports(3), str(tmp_path)))
    saved = ckpt.load_trainer_state(tmp_path / "split" / "checkpoints" / "update_0000005")
    # after update 5 rank 0 has taken all 5 batches of epoch 0, rank 1 its 4 and the first of epoch 1
    assert saved["positions"] == [[0, 5], [1, 1]]
    assert (saved["epoch"], saved["batches_in_epoch"]) == (0, 5)  # rank 0's, as before
    a = load_weights(tmp_path / "straight" / "checkpoints" / "last")
    b = load_weights(tmp_path / "split" / "checkpoints" / "last")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


class NoisyToyTask(ToyTask):
    """A task with a random generator of its own, saved with its state (as pretraining's masks); writes the first
    number it draws in a run to RUN/draw_<rank>."""

    def setup(self, info) -> None:
        super().setup(info)
        self.generator = torch.Generator().manual_seed(100 + info.rank)
        self.out = None

    def train_step(self, model, batch):
        x, y, index = batch
        noise = torch.rand(x.shape, generator=self.generator)
        if self.out is not None:
            (self.out / f"draw_{self.info.rank}").write_text(repr(noise.flatten()[0].item()))
            self.out = None
        return super().train_step(model, (x + 0.01 * noise, y, index))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)


def _noisy_worker(rank: int, world: int, ports: list[int], out: str) -> None:
    _join(rank, world, ports[0])
    task = NoisyToyTask()
    trainer = Trainer(_cfg(out, 3), task)
    task_setup = task.setup

    def setup(info):
        task_setup(info)
        task.out = Path(out)

    task.setup = setup
    trainer.fit()


def test_a_resume_with_another_world_size_gives_each_rank_its_own_task_generator(tmp_path):
    Trainer(_cfg(tmp_path, 2), NoisyToyTask()).fit()  # one process
    _ranks.run(_noisy_worker, (2, _ranks.free_ports(1), str(tmp_path)))  # two from its checkpoint
    draws = [(tmp_path / f"draw_{r}").read_text() for r in (0, 1)]
    assert draws[0] != draws[1]  # not both rank 0's saved generator
    assert "world size changed (1 -> 2)" in (tmp_path / "log.jsonl").read_text()
