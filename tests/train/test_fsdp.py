"""FSDP2 with 2 gloo processes on CPU: same weights as one process, and save + resume keep it so."""

import os
import socket

import torch

from xlsr.train.trainer import Trainer, TrainerConfig

from . import _ranks
from ._toy import ToyTask, load_weights, numbered_optimizer_state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(out, max_updates: int, distributed: str = "ddp"):
    # validation at every update: a forward without backward must not leave FSDP's root unsharded
    # (the optimizer would then step parameters the model no longer holds, and saving would fail)
    return TrainerConfig(out=str(out), max_updates=max_updates, lr=1e-2, lr_schedule="constant", warmup_updates=0,
                         update_freq=2, device="cpu", log_every=1, valid_every=1, save_every=2, progress=False,
                         tensorboard=False, clip_norm=0.5, distributed=distributed)


def _worker(rank: int, world: int, ports: list[int], out: str, stops: list[int]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    for port, max_updates in zip(ports, stops):  # a later stop resumes from the checkpoint the earlier one left
        # Each fit makes and destroys its process group: a fresh rendezvous port per fit, or a rank may reach the
        # store of the group being torn down (a suite run once hung here for gloo's 30 minutes).
        os.environ["MASTER_PORT"] = str(port)
        Trainer(_cfg(out, max_updates, "fsdp"), ToyTask(rows=5)).fit()


def test_fsdp_matches_one_process_and_resumes_exactly(tmp_path):
    single, fsdp = tmp_path / "single", tmp_path / "fsdp"
    Trainer(_cfg(single, 4), ToyTask(rows=5)).fit()
    _ranks.run(_worker, (2, _ranks.free_ports(2), str(fsdp), [2, 4]))  # the schedule is constant: 2 then 4 equals 4
    a, b = load_weights(single / "checkpoints" / "last"), load_weights(fsdp / "checkpoints" / "last")
    init = ToyTask().build_model().state_dict()
    assert (fsdp / "checkpoints" / "update_0000004").is_dir()
    for k in a:
        assert not torch.equal(a[k], init[k])  # training moved the weights
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def _resume_worker(rank: int, world: int, ports: list[int], outs: list[str], max_updates: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    for port, out in zip(ports, outs):
        os.environ["MASTER_PORT"] = str(port)  # a fresh rendezvous port per fit (as in _worker)
        Trainer(_cfg(out, max_updates, "fsdp"), ToyTask(rows=5)).fit()


def test_a_one_process_checkpoint_resumes_under_fsdp_in_either_optimizer_format(tmp_path):
    straight, named, numbered = tmp_path / "straight", tmp_path / "named", tmp_path / "numbered"
    Trainer(_cfg(straight, 4), ToyTask(rows=5)).fit()
    for run in (named, numbered):
        Trainer(_cfg(run, 2), ToyTask(rows=5)).fit()
    numbered_optimizer_state(numbered)  # as versions before named states wrote it without FSDP
    # the toy's batches split over the ranks by rows and it has no dropout: the run goes on as in one process, so
    # only Adam's moments and step counts from the checkpoint give the straight run's weights
    _ranks.run(_resume_worker, (2, _ranks.free_ports(2), [str(named), str(numbered)], 4))
    a = load_weights(straight / "checkpoints" / "last")
    for run in (named, numbered):
        assert "world size changed (1 -> 2)" in (run / "log.jsonl").read_text()
        b = load_weights(run / "checkpoints" / "last")
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def layerdrop_model(**overrides):
    """A tiny Wav2Vec2Model (seed 0) with layerdrop 0.5, seeded so that its next forward skips some layers but
    not all (the same draw on every rank); returns it and which layers that forward skips."""
    from dataclasses import replace

    from xlsr.model import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    model = Wav2Vec2Model(replace(Wav2Vec2Config.preset("tiny"), layerdrop=0.5, **overrides)).train()
    for seed in range(100):
        model.encoder.set_layerdrop_seed(seed)
        skipped = model.encoder._layers_to_skip()
        if any(skipped) and not all(skipped):
            break
    model.encoder.set_layerdrop_seed(seed)  # the forward draws the same again
    return model, skipped


def _layerdrop_worker(rank: int, world: int, port: int, out: str) -> None:
    from xlsr.train.distributed import init_distributed, shutdown, wrap_model

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    model, skipped = layerdrop_model()
    net = wrap_model(model, info, "fsdp")
    net.train()
    net(torch.randn(1, 4000), torch.tensor([4000])).last_hidden_state.pow(2).mean().backward()
    got_grad = [all(p.grad is not None for p in layer.parameters()) for layer in net.encoder.layers]
    torch.save({"skipped": skipped, "got_grad": got_grad}, f"{out}/{rank}.pt")
    shutdown(info)


def test_layerdrop_under_fsdp_skips_sharded_layers(tmp_path):
    _ranks.run(_layerdrop_worker, (2, _free_port(), str(tmp_path)))
    for rank in range(2):
        r = torch.load(tmp_path / f"{rank}.pt")
        assert any(r["skipped"]) and not all(r["skipped"])
        assert r["got_grad"] == [not s for s in r["skipped"]]
