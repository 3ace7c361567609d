"""What a resumed run takes over from its checkpoint besides the weights: the best metric so far, the skip counters,
the fp16 loss scale, each parameter group's configured rate factor, and a log without the updates a kill lost; that
pruning never deletes the `best` checkpoint, a non-finite metric is never `best`, and the validation at start leaves
the training's random state as it was."""

import os

import torch

from xlsr.train import checkpoint as ckpt
from xlsr.train.monitor import read_log
from xlsr.train.trainer import Trainer, TrainerConfig

from ._toy import HeadToyTask, ToyTask, load_weights


def _cfg(out, **kw):
    base = dict(out=str(out), max_updates=8, lr=3e-2, warmup_updates=2, device="cpu", log_every=1, valid_every=2,
                save_every=2, keep_last=1, progress=False, tensorboard=False, clip_norm=1.0)
    base.update(kw)
    return TrainerConfig(**base)


class _ScriptedValidToyTask(ToyTask):
    """The validation loss after update u is `losses[u]`, whatever the model (so `best` is known in advance)."""

    def __init__(self, losses, **kw):
        super().__init__(**kw)
        self.losses, self.update = losses, 0

    def on_update_start(self, model, update):
        self.update = update + 1  # the update this one becomes; validation follows it
        return {}

    def valid_step(self, model, batch):
        return {"loss": self.losses[self.update], "sample_size": 1}


LOSSES = {2: 1.0, 4: 0.5, 6: 2.0, 8: 3.0}  # best at update 4


def _train_updates(run):
    return [r["update"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"]


def test_a_resumed_run_keeps_the_best_metric_of_the_run_before(tmp_path):
    Trainer(_cfg(tmp_path), _ScriptedValidToyTask(LOSSES, stop_at=4)).fit()  # Ctrl-C in update 4
    root = tmp_path / "checkpoints"
    assert ckpt.load_trainer_state(root / "last")["update"] == 4
    Trainer(_cfg(tmp_path), _ScriptedValidToyTask(LOSSES)).fit()
    assert os.readlink(root / "best") == "update_0000004"  # 2.0 at update 6 is no new best after the resume
    assert ckpt.load_trainer_state(root / "last")["best"] == 0.5


def test_pruning_keeps_the_best_checkpoint_off_the_newest_ones(tmp_path):
    Trainer(_cfg(tmp_path), _ScriptedValidToyTask(LOSSES)).fit()
    root = tmp_path / "checkpoints"
    assert os.readlink(root / "best") == "update_0000004"
    assert [u for u, _ in ckpt.update_dirs(root)] == [4, 8]  # keep_last 1: the newest, and `best`
    assert ckpt.load_trainer_state(root / "best")["saved_as_best"]
    assert load_weights(root / "best")


def test_a_resume_after_a_kill_logs_the_updates_past_the_checkpoint_once(tmp_path):
    cfg = _cfg(tmp_path, max_updates=6, valid_every=0, save_every=4)
    Trainer(cfg, ToyTask()).fit()
    root = tmp_path / "checkpoints"
    # as if killed after logging updates 5 and 6 but before their checkpoint was written
    (root / "last").unlink()
    os.symlink("update_0000004", root / "last")
    for p in (root / "update_0000006").iterdir():
        p.unlink()
    (root / "update_0000006").rmdir()
    Trainer(cfg, ToyTask()).fit()
    assert _train_updates(tmp_path) == [1, 2, 3, 4, 5, 6]


def test_a_resume_goes_on_from_the_newest_complete_checkpoint_not_from_an_older_last(tmp_path, capsys):
    cfg = _cfg(tmp_path, max_updates=8, valid_every=0, save_every=2, keep_last=3)
    Trainer(cfg, ToyTask()).fit()
    root = tmp_path / "checkpoints"
    ckpt.point_link(root, "last", root / "update_0000004")  # killed after update_0000008 was renamed into place
    capsys.readouterr()
    Trainer(cfg, ToyTask()).fit()
    assert "from update 8" in capsys.readouterr().err  # nothing trained twice
    assert os.readlink(root / "last") == "update_0000008"


def test_a_resume_keeps_the_skip_counters_and_the_fp16_loss_scale(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    kw = dict(max_updates=12, valid_every=0, save_every=0, precision="fp16")
    Trainer(_cfg(straight, **kw), ToyTask(batches_per_epoch=20, nan_at={10})).fit()
    Trainer(_cfg(resumed, **kw), ToyTask(batches_per_epoch=20, nan_at={10}, stop_at=13)).fit()  # 13 of 17 steps, after the NaN
    Trainer(_cfg(resumed, **kw), ToyTask(batches_per_epoch=20, nan_at={10})).fit()
    a, b = ([r for r in read_log(run / "log.jsonl") if r.get("split") == "train"][-1] for run in (straight, resumed))
    assert a["nan_skipped"] == 1 and a["overflow_skipped"] > 0  # the fp16 toy overflows in its first steps
    for key in ("nan_skipped", "overflow_skipped", "loss_scale", "loss"):
        assert b[key] == a[key], key
    wa, wb = load_weights(straight / "checkpoints" / "last"), load_weights(resumed / "checkpoints" / "last")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_a_resume_trains_the_head_at_the_configurations_rate_factor_not_the_saved_one(tmp_path):
    Trainer(_cfg(tmp_path, valid_every=0, head_lr_scale=2.0), HeadToyTask(stop_at=3)).fit()
    resumed = Trainer(_cfg(tmp_path, valid_every=0, head_lr_scale=5.0), HeadToyTask())  # the same groups
    resumed.fit()
    head = {id(p) for p in resumed.model.lm_head.parameters()}
    scales = {g["lr_scale"] for g in resumed.optimizer.param_groups if head & {id(p) for p in g["params"]}}
    assert scales == {5.0}
    lr = [r for r in read_log(tmp_path / "log.jsonl") if r.get("split") == "train"][-1]["lr"]
    assert {g["lr"] for g in resumed.optimizer.param_groups if head & {id(p) for p in g["params"]}} == {5.0 * lr}


def test_a_non_finite_validation_metric_is_never_the_best(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=4, save_every=0), _ScriptedValidToyTask({2: float("nan"), 4: 0.7})).fit()
    root = tmp_path / "checkpoints"
    assert os.readlink(root / "best") == "update_0000004"
    assert ckpt.load_trainer_state(root / "last")["best"] == 0.7


class _RandomValidToyTask(ToyTask):
    """Its validation draws from the global random state (as a loader that crops would)."""

    def valid_step(self, model, batch):
        torch.rand(3)
        return super().valid_step(model, batch)


class _ValidatedAtStartToyTask(_RandomValidToyTask):
    validate_at_start = True


def test_the_validation_at_start_leaves_the_training_as_a_run_without_it(tmp_path):
    plain, at_start = tmp_path / "plain", tmp_path / "at_start"
    Trainer(_cfg(plain, max_updates=4), _RandomValidToyTask(dropout=0.2)).fit()
    Trainer(_cfg(at_start, max_updates=4), _ValidatedAtStartToyTask(dropout=0.2)).fit()
    assert [r["update"] for r in read_log(at_start / "log.jsonl") if r.get("split") == "valid"][0] == 0
    wa, wb = load_weights(plain / "checkpoints" / "last"), load_weights(at_start / "checkpoints" / "last")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
