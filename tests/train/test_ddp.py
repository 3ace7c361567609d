"""DDP with 2 gloo processes on CPU gives the same update as one process on the combined batch."""

import os
import signal
import socket

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.train.checkpoint import load_model_weights, load_trainer_state
from xlsr.train.monitor import read_log
from xlsr.train.trainer import Trainer, TrainerConfig

from . import _ranks
from ._toy import ToyTask, load_weights


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(out):
    # update_freq=2 exercises no_sync on the first micro-batch; rows=5 splits 3/2 over the ranks,
    # so equal results need the trainer's global sample-size normalisation (not DDP's plain mean)
    return TrainerConfig(out=str(out), max_updates=3, lr=1e-2, warmup_updates=0, update_freq=2, device="cpu", log_every=1,
                         valid_every=0, save_every=0, progress=False, tensorboard=False, clip_norm=0.5)


class _SecondPerRow(ToyTask):
    """Each row one second of 'audio', for the train log's throughput."""

    def batch_samples(self, batch) -> int:
        return len(batch[1]) * 16000


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Trainer(_cfg(out), _SecondPerRow(rows=5)).fit()


def test_two_gloo_ranks_equal_one_process_on_combined_batch(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    Trainer(_cfg(single), _SecondPerRow(rows=5)).fit()
    _ranks.run(_worker, (2, _free_port(), str(ddp)))
    a, b = load_weights(single / "checkpoints" / "last"), load_weights(ddp / "checkpoints" / "last")
    init = ToyTask().build_model().state_dict()
    for k in a:
        assert not torch.equal(a[k], init[k])  # training moved the weights
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # the gradient itself (before clipping and Adam's normalisation) is the same on every update
    norms = [[r["grad_norm"] for r in read_log(d / "log.jsonl") if r.get("split") == "train"] for d in (single, ddp)]
    assert len(norms[0]) == 3
    torch.testing.assert_close(torch.tensor(norms[0]), torch.tensor(norms[1]), rtol=1e-5, atol=0)
    # and the train log tells of every rank's rows, not rank 0's share: the loss over all 10 rows of the update (two
    # micro-batches of 5), its sample size, the audio of the update (a second a row)
    logs = [[(r["loss"], r["sample_size"], r["audio_s_per_s"] * r["seconds_per_update"])
             for r in read_log(d / "log.jsonl") if r.get("split") == "train"] for d in (single, ddp)]
    assert [(size, round(audio, 6)) for _, size, audio in logs[1]] == [(10, 10.0)] * 3
    torch.testing.assert_close(torch.tensor(logs[0]), torch.tensor(logs[1]), rtol=1e-5, atol=0)


def _empty_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Trainer(_cfg(out), ToyTask(batches_per_epoch=0)).fit()


def test_too_few_batches_for_the_ranks_is_one_line_error(tmp_path, capfd):
    codes, _ = _ranks.wait(_ranks.start(_empty_worker, (2, _free_port(), str(tmp_path))))
    # every rank meets it alike, in the same words: the first to announce it raises it, the other ends quietly (2)
    assert sorted(codes) == [1, 2]
    assert capfd.readouterr().err.count("no batches; the data makes fewer batches than the 2 processes") == 1


def _signalled_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = TrainerConfig(out=out, max_updates=6, lr=1e-2, warmup_updates=0, device="cpu", log_every=1, valid_every=0,
                        save_every=0, progress=False, tensorboard=False)
    trainer = Trainer(cfg, ToyTask(rows=4))
    log_train, train_step = trainer._log_train, trainer.task.train_step

    def rank_0_signalled_after_update_2(logs, window):
        log_train(logs, window)
        if rank == 0 and trainer.update == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    def rank_1_signalled_in_update_3(model, batch):
        if rank == 1 and trainer.update == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(model, batch)

    trainer._log_train, trainer.task.train_step = rank_0_signalled_after_update_2, rank_1_signalled_in_update_3
    trainer.fit()
    torch.save(trainer.model.state_dict(), f"{out}/rank{rank}.pt")


def test_a_signal_reaching_the_ranks_at_different_updates_stops_them_at_the_same_one(tmp_path):
    # torchrun's SIGTERM reaches rank 0 between updates 2 and 3, rank 1 inside update 3. Rank 0 used to leave the
    # loop for the save's collective while rank 1 went on into update 3's: both hung, and nothing was saved.
    codes, _ = _ranks.wait(_ranks.start(_signalled_worker, (2, _free_port(), str(tmp_path)), deadline_s=90),
                           deadline_s=100)
    assert codes == [0, 0], f"the ranks exited with {codes}; their output is above"
    assert load_trainer_state(tmp_path / "checkpoints" / "last")["update"] == 3
    saved = load_model_weights(tmp_path / "checkpoints" / "last")
    for rank in (0, 1):
        weights = torch.load(tmp_path / f"rank{rank}.pt")
        assert all(torch.equal(weights[k], saved[k]) for k in saved)


def _differing_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # rank 1 was given another --max-updates (and its own device and data path, which may differ)
    settings = {"max_updates": 3 if rank == 0 else 5, "lr": 0.01, "device": f"cpu:{rank}", "data": f"/node{rank}"}
    Trainer(_cfg(out), ToyTask(rows=4), resolved_config=settings).fit()


def test_a_rank_with_other_settings_is_refused_in_one_line_instead_of_hanging(tmp_path, capfd):
    codes, seconds = _ranks.wait(_ranks.start(_differing_worker, (2, _free_port(), str(tmp_path))), deadline_s=120)
    err = capfd.readouterr().err
    assert codes == [1, 1] and max(seconds) < 100, (codes, seconds, err[-2000:])
    assert err.count("max_updates: 3 on rank 0, 5 on another rank; every rank must run with the same settings (the "
                     "same command and config file on every node)") >= 1
    assert not (tmp_path / "checkpoints").exists()


# the settings check alone, rank 1's side (rank 0's settings as the broadcast hands them over): no processes needed
_RANK_0 = {"max_updates": 3, "lr": 0.01, "device": "cuda:0", "num_workers": 4, "data": "/node0/data", "log_every": 10,
           "valid_every": 1000, "save_every": 1000, "precision": "bf16", "distributed": "ddp",
           "feature_health_frames": 0, "probe_every": 0}


def _rank_1_check(tmp_path, monkeypatch, **mine):
    from xlsr.train import distributed as dist_util
    from xlsr.train.distributed import DistInfo

    trainer = Trainer(_cfg(tmp_path), ToyTask(), resolved_config={**_RANK_0, **mine})
    trainer.info = DistInfo(rank=1, world_size=2)
    monkeypatch.setattr(dist_util, "broadcast_object", lambda obj, info: dict(_RANK_0))
    trainer._check_same_settings_as_rank_0()


@pytest.mark.parametrize("key, mine", [("valid_every", 500), ("save_every", 500), ("precision", "fp16"),
                                       ("distributed", "fsdp"), ("feature_health_frames", 2000), ("probe_every", 100)])
def test_a_rank_that_would_validate_save_wrap_or_scale_otherwise_than_rank_0_is_refused(tmp_path, monkeypatch, key,
                                                                                         mine):
    # each parts the ranks: a collective only some reach (validation, save, validation at start, FSDP's gathers), or
    # gradients scaled by fp16's loss scale on one rank only, averaged by DDP with the others' unscaled ones
    with pytest.raises(XlsrError) as info:
        _rank_1_check(tmp_path, monkeypatch, **{key: mine})
    assert str(info.value).startswith(f"{key}: {_RANK_0[key]!r} on rank 0, {mine!r} on another rank; every rank must "
                                      f"run with the same settings")


def test_a_rank_may_run_on_its_own_device_workers_data_path_and_log_interval(tmp_path, monkeypatch):
    _rank_1_check(tmp_path, monkeypatch, device="cuda:1", num_workers=2, data="/mnt/data", log_every=5)


def _missing_data_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)

    def make_task():  # as pretrain() and finetune() hand the Trainer their task: made once the ranks connected
        raise XlsrError("data: /nowhere: no such folder")

    Trainer(_cfg(out), make_task).fit()


def test_an_error_every_rank_meets_making_its_task_is_said_once(tmp_path, capfd):
    codes, _ = _ranks.wait(_ranks.start(_missing_data_worker, (2, _free_port(), str(tmp_path / "run"))))
    # the first to meet it raises it (1); the other ends quietly (2), or is ended for it by its watch first (1)
    assert set(codes) <= {1, 2} and 1 in codes
    assert capfd.readouterr().err.count("XlsrError: data: /nowhere: no such folder") == 1  # the raised error's line
    assert not (tmp_path / "run").exists()  # the folder the lock made, left empty, is gone
