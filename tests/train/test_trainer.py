"""The generic Trainer on a toy regression task: learning, NaN skipping, SIGINT + exact resume, refusal."""

import json
import os
import signal

import pytest
import torch

from xlsr.errors import CheckpointError, XlsrError
from xlsr.train import checkpoint as ckpt
from xlsr.train.monitor import read_log
from xlsr.train.trainer import Trainer, TrainerConfig, TrainingError

from ._toy import HeadToyTask, ToyTask, load_weights, numbered_optimizer_state


def _cfg(out, **kw):
    base = dict(out=str(out), max_updates=8, lr=3e-2, warmup_updates=2, device="cpu", log_every=1,
                valid_every=4, save_every=4, keep_last=2, progress=False, tensorboard=False, clip_norm=1.0)
    base.update(kw)
    return TrainerConfig(**base)


def test_loss_falls_and_run_folder_layout(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=20, valid_every=10, save_every=5, keep_last=1), ToyTask()).fit()
    records = read_log(tmp_path / "log.jsonl")
    train = [r for r in records if r.get("split") == "train"]
    assert len(train) == 20
    assert sum(r["loss"] for r in train[-5:]) < 0.5 * sum(r["loss"] for r in train[:5])
    assert {"lr", "grad_norm", "sample_size", "data_wait_share"} <= set(train[0])
    assert train[0]["sample_size"] == 5
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["update"] for r in valid] == [10, 20]
    assert any(r.get("split") == "valid_toy" for r in records)
    root = tmp_path / "checkpoints"
    assert os.readlink(root / "last") == "update_0000020"
    assert (root / "best").resolve().name in {"update_0000010", "update_0000020"}
    kept = sorted(p.name for p in root.iterdir() if p.name.startswith("update_"))
    assert "update_0000005" not in kept and "update_0000020" in kept  # keep_last=1 (+ best)
    state = ckpt.load_trainer_state(root / "last")  # weights_only=True
    assert (state["update"], state["epoch"], state["batches_in_epoch"]) == (20, 3, 5)


def test_sigint_then_rerun_resumes_exactly(tmp_path):
    # dropout makes the run depend on the RNG state too
    straight = tmp_path / "straight"
    Trainer(_cfg(straight, max_updates=9), ToyTask(dropout=0.2)).fit()

    resumed = tmp_path / "resumed"
    Trainer(_cfg(resumed, max_updates=9), ToyTask(dropout=0.2, stop_at=3)).fit()  # "Ctrl-C" in step 3
    state = ckpt.load_trainer_state(resumed / "checkpoints" / "last")
    assert state["update"] == 3 and state["batches_in_epoch"] == 3
    Trainer(_cfg(resumed, max_updates=9), ToyTask(dropout=0.2)).fit()  # the same command again

    a = load_weights(straight / "checkpoints" / "last")
    b = load_weights(resumed / "checkpoints" / "last")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    la = [r["loss"] for r in read_log(straight / "log.jsonl") if r.get("split") == "train"]
    lb = [r["loss"] for r in read_log(resumed / "log.jsonl") if r.get("split") == "train"]
    assert la == lb


def test_the_optimizer_state_names_its_parameters_and_an_older_numbered_one_resumes_exactly(tmp_path):
    straight, old = tmp_path / "straight", tmp_path / "old"
    Trainer(_cfg(straight, max_updates=9), ToyTask(dropout=0.2)).fit()
    Trainer(_cfg(old, max_updates=9), ToyTask(dropout=0.2, stop_at=3)).fit()
    saved = ckpt.load_trainer_state(old / "checkpoints" / "last")["optimizer"]
    names = [n for g in saved["param_groups"] for n in g["params"]]
    # one format for every strategy: a checkpoint written by one process resumes under FSDP too (test_fsdp.py)
    assert set(names) == set(saved["state"]) == {n for n, _ in ToyTask().build_model().named_parameters()}
    numbered_optimizer_state(old)
    Trainer(_cfg(old, max_updates=9), ToyTask(dropout=0.2)).fit()
    a, b = load_weights(straight / "checkpoints" / "last"), load_weights(old / "checkpoints" / "last")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_a_resume_trains_with_the_configurations_weight_decay_not_the_saved_one(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=9, weight_decay=0.01), ToyTask(stop_at=3)).fit()
    resumed = Trainer(_cfg(tmp_path, max_updates=4, weight_decay=0.1, adam_eps=1e-8), ToyTask())
    resumed.fit()
    decayed = [g for g in resumed.optimizer.param_groups if g["weight_decay"] > 0]
    assert decayed and all(g["weight_decay"] == 0.1 and g["eps"] == 1e-8 for g in decayed)
    assert resumed.optimizer.state  # the moments came from the checkpoint


def test_a_resume_after_a_kill_between_a_new_best_and_its_link_points_best_at_it(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=8), ToyTask()).fit()
    root = tmp_path / "checkpoints"
    newest = root / "update_0000008"
    state_file = newest / ckpt.TRAINER_FILE
    state = torch.load(state_file, weights_only=True)
    state["saved_as_best"] = True  # written as a new best ...
    torch.save(state, state_file)
    ckpt.point_link(root, "best", root / "update_0000004")  # ... and killed before `best` moved to it
    Trainer(_cfg(tmp_path, max_updates=8), ToyTask()).fit()  # the same command again: it resumes at the end
    assert (root / "best").resolve().name == "update_0000008"
    assert (root / "update_0000008").is_dir()


def test_nan_step_is_skipped_and_counted(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=6), ToyTask(nan_at={2})).fit()
    records = read_log(tmp_path / "log.jsonl")
    warnings = [r for r in records if r.get("warning") == "nonfinite"]
    assert len(warnings) == 1 and "skipped" in warnings[0]["message"]
    train = [r for r in records if r.get("split") == "train"]
    assert [r["update"] for r in train] == [1, 2, 3, 4, 5, 6]  # the skipped batch did not count
    assert train[-1]["nan_skipped"] == 1
    weights = load_weights(tmp_path / "checkpoints" / "last")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_too_many_nan_steps_in_a_row_stop_the_run(tmp_path):
    with pytest.raises(TrainingError, match="3 non-finite steps in a row"):
        Trainer(_cfg(tmp_path, max_consecutive_nan=3), ToyTask(nan_at={1, 2, 3})).fit()


class _OverflowingToyTask(ToyTask):
    """Every gradient of the batches in `overflow_at` is infinite while the loss stays finite (an fp16 overflow)."""

    def __init__(self, overflow_at, **kw):
        super().__init__(**kw)
        self.overflow_at = overflow_at

    def train_step(self, model, batch):
        loss, logs = super().train_step(model, batch)
        if int(batch[2]) in self.overflow_at:
            loss.register_hook(lambda g: g * float("inf"))
        return loss, logs


def test_fp16_overflows_lower_the_scale_are_counted_and_training_goes_on(tmp_path):
    # the toy's first steps overflow fp16 by themselves at GradScaler's initial 2^16; batches 7 and 8 overflow too
    logs = []
    for name, task in (("plain", ToyTask()), ("overflowing", _OverflowingToyTask({7, 8}))):
        Trainer(_cfg(tmp_path / name, max_updates=8, precision="fp16"), task).fit()
        logs.append([r for r in read_log(tmp_path / name / "log.jsonl") if r.get("split") == "train"])
    plain, overflowing = logs
    assert [r["update"] for r in overflowing] == list(range(1, 9))  # the overflowing batches did not count
    assert overflowing[-1]["overflow_skipped"] == plain[-1]["overflow_skipped"] + 2
    assert overflowing[-1]["loss_scale"] == plain[-1]["loss_scale"] / 4  # halved once per overflow
    assert overflowing[-1]["nan_skipped"] == 0
    assert all(torch.isfinite(w).all() for w in load_weights(tmp_path / "overflowing" / "checkpoints" / "last").values())


def test_fp16_loss_scale_below_its_floor_stops_the_run_in_one_line(tmp_path):
    # 2^16 halved 21 times is 2^-5 (0.031) < 0.05: the 21st overflowing step in a row ends the run
    with pytest.raises(TrainingError, match=r"the fp16 loss scale fell to 0.0312, below min_loss_scale 0.05, at "
                                            r"update 0 \(21 overflowing steps skipped\): the loss is exploding"):
        Trainer(_cfg(tmp_path, precision="fp16", min_loss_scale=0.05),
                _OverflowingToyTask(set(range(1000)), batches_per_epoch=30)).fit()


def test_min_loss_scale_must_be_positive(tmp_path):
    with pytest.raises(XlsrError, match="min_loss_scale: must be positive, got 0"):
        _cfg(tmp_path, min_loss_scale=0.0)


def test_crash_mid_write_leaves_last_loadable(tmp_path, monkeypatch):
    Trainer(_cfg(tmp_path, max_updates=4), ToyTask()).fit()
    root = tmp_path / "checkpoints"
    good = load_weights(root / "last")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing trainer.pt")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_cfg(tmp_path, max_updates=8), ToyTask()).fit()
    monkeypatch.undo()
    assert any(p.name.startswith(".tmp-update_0000008") for p in root.iterdir())  # the half-written one
    assert os.readlink(root / "last") == "update_0000004"
    for k, v in load_weights(root / "last").items():
        torch.testing.assert_close(v, good[k])
    Trainer(_cfg(tmp_path, max_updates=8), ToyTask()).fit()  # resumes from 4 and cleans the staging dir
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())
    assert ckpt.load_trainer_state(root / "last")["update"] == 8


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=4), ToyTask()).fit()
    last = tmp_path / "checkpoints" / "last"
    data = (last / "trainer.pt").read_bytes()
    (last / "trainer.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trainer.pt: corrupt") as err:
        Trainer(_cfg(tmp_path, max_updates=8), ToyTask()).fit()
    assert "\n" not in str(err.value)


def test_run_folder_of_another_model_is_refused_untouched(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=4), ToyTask()).fit()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=r"another model \(model.dim: 4 there, 6 now\)"):
        Trainer(_cfg(tmp_path, max_updates=8), ToyTask(dim=6)).fit()
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after
    cfg = json.loads((tmp_path / "checkpoints" / "last" / "config.json").read_text())
    assert cfg["model"]["dim"] == 4


@pytest.mark.parametrize("key, value", [("max_updates", -5), ("update_freq", 0), ("log_every", 0), ("lr", -1.0),
                                        ("final_lr_scale", 0.0), ("final_lr_scale", 20.0), ("init_lr_scale", -0.5),
                                        ("init_lr_scale", 2.0), ("end_lr", -1e-4), ("end_lr", 1.0),
                                        ("phase_ratio", (-0.5, 0.5, 1.0)), ("phase_ratio", (0.5, 0.5, 0.5)),
                                        ("phase_ratio", (0.5, 0.5))])
def test_settings_out_of_range_are_one_line_errors(tmp_path, key, value):
    with pytest.raises(XlsrError, match=rf"{key}.*must"):
        TrainerConfig(out=str(tmp_path), **{key: value})


class _PooledToyTask(ToyTask):
    """Validates before the first update too and adds one whole-validation figure (the pooled valid rows)."""

    validate_at_start = True

    def valid_sets(self):
        self.rows_seen = 0
        return {"toy": [(self.x[:4], self.y[:4], torch.tensor(-1)), (self.x[4:10], self.y[4:10], torch.tensor(-1))]}

    def valid_step(self, model, batch):
        self.rows_seen += len(batch[1])
        return super().valid_step(model, batch)

    def valid_end(self, model, update):
        assert not model.training and not torch.is_grad_enabled()
        return {"pooled_rows": self.rows_seen, "seen_at": update}


def test_validation_at_start_and_whole_validation_logs(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=4, valid_every=2, save_every=0), _PooledToyTask()).fit()
    records = read_log(tmp_path / "log.jsonl")
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["update"] for r in valid] == [0, 2, 4]
    # over all batches of the validation (4 + 6 rows), not a weighted mean of per-batch values; overall record only
    assert [(r["pooled_rows"], r["seen_at"]) for r in valid] == [(10, 0), (10, 2), (10, 4)]
    assert all("pooled_rows" not in r for r in records if r.get("split") == "valid_toy")
    # the untrained model is measured but is no candidate for `best`
    root = tmp_path / "checkpoints"
    assert not (root / "update_0000000").exists() and (root / "best").resolve().name in {"update_0000002",
                                                                                         "update_0000004"}
    Trainer(_cfg(tmp_path, max_updates=6, valid_every=2, save_every=0), _PooledToyTask()).fit()  # resume
    valid = [r["update"] for r in read_log(tmp_path / "log.jsonl") if r.get("split") == "valid"]
    assert valid == [0, 2, 4, 6]  # no second validation "at start" on resume


def test_best_checkpoints_between_saves_do_not_push_out_the_periodic_ones(tmp_path):
    """valid_every 2 saves a checkpoint at every new best; keep_last counts the save_every grid only, so the
    periodic checkpoints stay (they used to be pruned by the best ones: a run kept 1200-1600 of 400, 800, ...)."""
    Trainer(_cfg(tmp_path, max_updates=20, valid_every=2, save_every=8, keep_last=2), ToyTask()).fit()
    root = tmp_path / "checkpoints"
    kept = sorted(int(p.name.split("_")[1]) for p in root.iterdir() if p.name.startswith("update_"))
    best = int((root / "best").resolve().name.split("_")[1])
    assert {8, 16, 20} <= set(kept)  # the grid's newest two, and the end (`last`)
    assert set(kept) <= {8, 16, 20, best}  # off-grid ones only while they are `best`


@pytest.mark.parametrize("keep_last", [3, 10])
def test_keep_last_keeps_that_many_checkpoints_of_the_grid(tmp_path, keep_last):
    # fewer checkpoints than keep_last used to make the slice start negative: 3 kept 1, 10 kept 4 after six saves
    for update in range(1, 7):
        folder = tmp_path / ckpt.update_dir_name(update)
        folder.mkdir()
        (folder / ckpt.TRAINER_FILE).write_text("x")
        ckpt.prune_checkpoints(tmp_path, keep_last, save_every=1)
        assert [u for u, _ in ckpt.update_dirs(tmp_path)] == list(range(max(1, update - keep_last + 1), update + 1))


def test_keep_last_3_keeps_the_newest_3_saves_of_a_run(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=12, valid_every=0, save_every=2, keep_last=3), _NoDevToyTask()).fit()
    kept = [u for u, _ in ckpt.update_dirs(tmp_path / "checkpoints")]
    assert kept == [8, 10, 12]


class _NoDevToyTask(ToyTask):
    def valid_sets(self):
        return {}


def test_a_signal_during_the_flags_all_reduce_stops_the_run_after_the_next_update(tmp_path, monkeypatch):
    from xlsr.train import distributed as dist_util

    reduce, calls = dist_util.all_reduce_sum, []

    def signalled_inside(flags, info):
        calls.append(1)
        reduce(flags, info)
        if len(calls) == 3:  # the stop flags of update 3 are summed already: it counts at update 4's
            os.kill(os.getpid(), signal.SIGTERM)
        return flags

    monkeypatch.setattr(dist_util, "all_reduce_sum", signalled_inside)
    trainer = Trainer(_cfg(tmp_path, max_updates=20, valid_every=0, save_every=0), _NoDevToyTask())
    trainer.fit()  # used to be overwritten by update 3's result and lost: the run went on to update 20
    assert trainer.update == 4
    assert ckpt.load_trainer_state(tmp_path / "checkpoints" / "last")["update"] == 4


def test_a_kill_before_last_moved_is_repaired_by_the_next_start(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, max_updates=8, valid_every=0, save_every=2, keep_last=1)
    point_link = ckpt.point_link

    def killed_before_last_moves_to_8(root, name, target):
        if name == "last" and target.name == "update_0000008":
            raise KeyboardInterrupt("killed")
        point_link(root, name, target)

    monkeypatch.setattr(ckpt, "point_link", killed_before_last_moves_to_8)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, _NoDevToyTask()).fit()
    monkeypatch.undo()
    root = tmp_path / "checkpoints"
    assert os.readlink(root / "last") == "update_0000006"
    Trainer(cfg, _NoDevToyTask()).fit()  # the same command again: resumes at 8, the end, and saves nothing
    assert os.readlink(root / "last") == "update_0000008"  # it stayed on 6 for good
    assert [u for u, _ in ckpt.update_dirs(root)] == [8]  # and keep_last 1 pruned 6


def test_rerunning_a_finished_run_adds_nothing_and_a_finished_run_is_not_reported_stopped(tmp_path, capsys):
    from xlsr.errors import TrainingInterrupted

    with pytest.raises(TrainingInterrupted, match="it is finished"):  # the command stops, but the run is whole
        Trainer(_cfg(tmp_path, max_updates=4), ToyTask(stop_at=4)).fit()  # Ctrl-C in the last update
    assert "run the same command again" not in capsys.readouterr().err  # it finished: nothing to resume
    log = (tmp_path / "log.jsonl").read_text()
    assert [r["update"] for r in read_log(tmp_path / "log.jsonl") if r.get("split") == "valid"] == [4]
    Trainer(_cfg(tmp_path, max_updates=4), ToyTask()).fit()  # the same command again
    assert (tmp_path / "log.jsonl").read_text() == log  # no second validation of update 4


def test_a_streak_of_non_finite_steps_goes_on_counting_after_a_resume(tmp_path):
    cfg = _cfg(tmp_path, max_updates=8, valid_every=0, max_consecutive_nan=3)
    Trainer(cfg, ToyTask(batches_per_epoch=10, rows=4, nan_at={2, 3, 4, 5}, stop_at=4)).fit()  # in the 2nd NaN
    assert ckpt.load_trainer_state(tmp_path / "checkpoints" / "last")["consecutive_nan"] == 2
    with pytest.raises(TrainingError, match="3 non-finite steps in a row"):  # as a straight run: it restarted at 0
        Trainer(cfg, ToyTask(batches_per_epoch=10, rows=4, nan_at={2, 3, 4, 5})).fit()


def test_a_refused_resume_leaves_the_run_files_as_they_were(tmp_path):
    from xlsr.config import read_yaml

    Trainer(_cfg(tmp_path, max_updates=4), HeadToyTask(stop_at=2), resolved_config={"lr": 0.03}).fit()
    with pytest.raises(CheckpointError, match="parameter groups differ"):
        Trainer(_cfg(tmp_path, max_updates=4, head_lr_scale=2.0), HeadToyTask(), resolved_config={"lr": 0.001}).fit()
    assert read_yaml(tmp_path / "config.yaml") == {"lr": 0.03}  # not the refused run's


def test_a_stop_logs_the_updates_since_the_last_log_line(tmp_path):
    each, straight, stopped = tmp_path / "each", tmp_path / "straight", tmp_path / "stopped"
    Trainer(_cfg(each, max_updates=8, log_every=1), ToyTask()).fit()
    Trainer(_cfg(straight, max_updates=8, log_every=4), ToyTask()).fit()
    Trainer(_cfg(stopped, max_updates=8, log_every=4), ToyTask(stop_at=6)).fit()  # Ctrl-C in update 6

    def losses(run):
        return {r["update"]: r["loss"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"}
    assert list(losses(straight)) == [4, 8]
    assert losses(stopped) == {4: losses(straight)[4], 6: (losses(each)[5] + losses(each)[6]) / 2}
    Trainer(_cfg(stopped, max_updates=8, log_every=4), ToyTask()).fit()  # resumed: a record at 6, then 7-8
    assert losses(stopped) == {4: losses(straight)[4], 6: (losses(each)[5] + losses(each)[6]) / 2,
                               8: (losses(each)[7] + losses(each)[8]) / 2}
    a, b = load_weights(straight / "checkpoints" / "last"), load_weights(stopped / "checkpoints" / "last")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


class _DevFailsToyTask(ToyTask):
    """Two validation sets, each drawing from the random state (as a loader that crops would); the second one fails
    (its audio unreadable, say) when this task has trained `fail_at` steps."""

    def __init__(self, fail_at=None, **kw):
        super().__init__(**kw)
        self.fail_at = fail_at

    def valid_sets(self):
        return {"a": [(self.x[:5], self.y[:5], torch.tensor(-1))], "b": [(self.x[5:10], self.y[5:10], torch.tensor(-2))]}

    def valid_step(self, model, batch):
        torch.rand(())
        if int(batch[2]) == -2 and self.steps == self.fail_at:
            raise OSError("dev audio unreadable")
        return super().valid_step(model, batch)


@pytest.mark.parametrize("fail_at", [4, 8])  # mid-run; the final validation
def test_a_failed_validation_is_done_first_by_the_rerun_as_a_straight_run_does_it(tmp_path, fail_at):
    straight, failed = tmp_path / "straight", tmp_path / "failed"
    Trainer(_cfg(straight, max_updates=8), _DevFailsToyTask(dropout=0.2)).fit()
    with pytest.raises(OSError, match="dev audio unreadable"):
        Trainer(_cfg(failed, max_updates=8), _DevFailsToyTask(fail_at, dropout=0.2)).fit()
    state = ckpt.load_trainer_state(failed / "checkpoints" / "last")
    assert (state["update"], state["validation_pending"]) == (fail_at, True)  # its updates kept, its validation owed
    assert any(r.get("split") == "valid_a" and r["update"] == fail_at for r in read_log(failed / "log.jsonl"))
    with pytest.raises(OSError, match="dev audio unreadable"):  # the cause not fixed yet: it fails again, first thing
        Trainer(_cfg(failed, max_updates=8), _DevFailsToyTask(0, dropout=0.2)).fit()
    assert ckpt.load_trainer_state(failed / "checkpoints" / "last")["validation_pending"]
    assert not ckpt.run_finished(failed, 8)  # at update 8 too: its final validation is owed
    Trainer(_cfg(failed, max_updates=8), _DevFailsToyTask(dropout=0.2)).fit()  # fixed: the same command again
    assert ckpt.run_finished(failed, 8)

    def validations(run):
        return [{k: v for k, v in r.items() if k != "time"} for r in read_log(run / "log.jsonl")
                if r.get("split", "").startswith("valid")]
    assert [(r["split"], r["update"]) for r in validations(failed)] == [
        ("valid_a", 4), ("valid_b", 4), ("valid", 4), ("valid_a", 8), ("valid_b", 8), ("valid", 8)]
    assert validations(failed) == validations(straight)  # the failed attempt's valid_a record is not there twice
    root = failed / "checkpoints"
    assert os.readlink(root / "best") == os.readlink(straight / "checkpoints" / "best")
    a, b = ckpt.load_trainer_state(straight / "checkpoints" / "last"), ckpt.load_trainer_state(root / "last")
    assert (b["update"], b["best"], b["validation_pending"]) == (8, a["best"], False)
    assert ckpt.load_trainer_state(root / "best")["saved_as_best"]
    wa, wb = load_weights(straight / "checkpoints" / "last"), load_weights(root / "last")
    for k in wa:  # the random state saved was the one before the validation: the rest of the run is the straight one
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    log = (failed / "log.jsonl").read_text()
    Trainer(_cfg(failed, max_updates=8), _DevFailsToyTask(dropout=0.2)).fit()  # done: a re-run adds nothing
    assert (failed / "log.jsonl").read_text() == log


def test_a_checkpoint_without_validation_pending_owes_no_validation(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=4), ToyTask()).fit()
    path = tmp_path / "checkpoints" / "last" / ckpt.TRAINER_FILE
    state = torch.load(path, weights_only=True)
    del state["validation_pending"]  # as checkpoints before it were written
    torch.save(state, path)
    log = (tmp_path / "log.jsonl").read_text()
    Trainer(_cfg(tmp_path, max_updates=4), ToyTask()).fit()
    assert (tmp_path / "log.jsonl").read_text() == log


class _SaveFailsOnceToyTask(ToyTask):
    """Writing a checkpoint fails once, after `fail_at` trained steps (a full disk, freed at once)."""

    def __init__(self, fail_at=None, **kw):
        super().__init__(**kw)
        self.fail_at = fail_at

    def save_model(self, directory, model):
        if self.steps == self.fail_at:
            self.fail_at = None
            raise OSError("no space left on device")
        super().save_model(directory, model)


def test_a_validation_whose_new_best_failed_to_save_is_a_new_best_again_on_the_rerun(tmp_path):
    straight, failed = tmp_path / "straight", tmp_path / "failed"
    Trainer(_cfg(straight, max_updates=8), ToyTask()).fit()
    assert os.readlink(straight / "checkpoints" / "best") == "update_0000008"
    with pytest.raises(OSError, match="no space left"):  # writing the new best of update 8 failed
        Trainer(_cfg(failed, max_updates=8), _SaveFailsOnceToyTask(8)).fit()
    state = ckpt.load_trainer_state(failed / "checkpoints" / "last")
    assert (state["update"], state["validation_pending"], state["best"]) == (8, True, pytest.approx(
        ckpt.load_trainer_state(straight / "checkpoints" / "update_0000004")["best"]))  # the best before it
    Trainer(_cfg(failed, max_updates=8), ToyTask()).fit()
    assert os.readlink(failed / "checkpoints" / "best") == "update_0000008"


class _SignalledInFinalValidation(ToyTask):
    def valid_step(self, model, batch):
        if not getattr(self, "sent", False):
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return super().valid_step(model, batch)


@pytest.mark.parametrize("task", [_SignalledInFinalValidation, lambda: ToyTask(stop_at=4)],
                         ids=["in the final validation", "in the last update"])
def test_a_signal_as_the_run_ends_stops_the_command_with_the_run_finished(tmp_path, task):
    # the run is whole and saved (its final validation, its save), but the command holding it must stop, not go on
    # to its next step (a demo went on to its next stage); in the last update the stop request reaches that update's
    # all-reduce, after the final validation it does not: both end so
    from xlsr.errors import TrainingInterrupted

    trainer = Trainer(_cfg(tmp_path, max_updates=4, valid_every=0, save_every=0), task())
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert str(info.value) == (f"SIGINT came as the run ended: it is finished (update 4) and saved in {tmp_path}; "
                               f"stopped there")
    assert ckpt.run_finished(tmp_path, 4)
    assert [r["update"] for r in read_log(tmp_path / "log.jsonl") if r.get("split") == "valid"] == [4]
