"""The generic Trainer on a toy regression task: learning, NaN skipping, SIGINT + exact resume, refusal."""

import json
import os

import pytest
import torch

from xlsr.errors import CheckpointError, XlsrError
from xlsr.train import checkpoint as ckpt
from xlsr.train.monitor import read_log
from xlsr.train.trainer import Trainer, TrainerConfig, TrainingError

from ._toy import ToyTask, load_weights


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
    with pytest.raises(CheckpointError, match=r"another model \(dim: 4 there, 6 now\)"):
        Trainer(_cfg(tmp_path, max_updates=8), ToyTask(dim=6)).fit()
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after
    cfg = json.loads((tmp_path / "checkpoints" / "last" / "config.json").read_text())
    assert cfg["model"]["dim"] == 4


@pytest.mark.parametrize("key, value", [("max_updates", -5), ("update_freq", 0), ("log_every", 0), ("lr", -1.0)])
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
