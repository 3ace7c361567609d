"""One update of the generic Trainer, measured: gradient accumulation, clipping (and clip_norm 0 = off), the log of
the last update, and what a streak of non-finite steps is."""

import pytest
import torch

from xlsr.train.monitor import read_log
from xlsr.train.trainer import Trainer, TrainerConfig, TrainingError

from ._toy import ToyTask, load_weights


def _cfg(out, **kw):
    base = dict(out=str(out), max_updates=4, lr=3e-2, warmup_updates=0, device="cpu", log_every=1, valid_every=0,
                save_every=0, progress=False, tensorboard=False, clip_norm=0.0)
    base.update(kw)
    return TrainerConfig(**base)


def _train(run):
    return [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"]


def test_two_micro_batches_per_update_equal_one_batch_of_both(tmp_path):
    # rows=5 x update_freq 2 sees order[0:10], order[10:20], ... as rows=10 does in one batch: the same x, y and order
    accumulated, whole = tmp_path / "accumulated", tmp_path / "whole"
    Trainer(_cfg(accumulated, update_freq=2), ToyTask(rows=5, batches_per_epoch=4)).fit()
    Trainer(_cfg(whole, update_freq=1), ToyTask(rows=10, batches_per_epoch=2)).fit()
    a, b = _train(accumulated), _train(whole)
    assert [r["sample_size"] for r in a] == [10] * 4  # the update's sample size is summed over its micro-batches
    # the gradient itself (before Adam's normalisation): the sum over both micro-batches / their total size
    torch.testing.assert_close(torch.tensor([r["grad_norm"] for r in a]), torch.tensor([r["grad_norm"] for r in b]),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor([r["loss"] for r in a]), torch.tensor([r["loss"] for r in b]),
                               rtol=1e-5, atol=0)
    wa, wb = load_weights(accumulated / "checkpoints" / "last"), load_weights(whole / "checkpoints" / "last")
    init = ToyTask().build_model().state_dict()
    for k in wa:
        assert not torch.equal(wa[k], init[k])
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def _gradient_norms_at_the_step(monkeypatch) -> list[float]:
    """The norm of the gradients the optimizer steps with, one per update."""
    norms = []
    step = torch.amp.GradScaler.step

    def spy(scaler, optimizer, *args, **kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(scaler, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", spy)
    return norms


def test_gradients_are_clipped_to_clip_norm_and_the_log_keeps_the_norm_before(tmp_path, monkeypatch):
    stepped = _gradient_norms_at_the_step(monkeypatch)
    Trainer(_cfg(tmp_path, clip_norm=0.05), ToyTask()).fit()
    logged = [r["grad_norm"] for r in _train(tmp_path)]
    assert len(stepped) == len(logged) == 4
    assert all(n > 0.05 for n in logged)  # every update clipped (the toy's gradients are larger)
    assert stepped == pytest.approx([0.05] * 4, rel=1e-4)


def test_clip_norm_0_leaves_the_gradients_as_they_are(tmp_path, monkeypatch):
    stepped = _gradient_norms_at_the_step(monkeypatch)
    Trainer(_cfg(tmp_path, clip_norm=0.0), ToyTask()).fit()
    logged = [r["grad_norm"] for r in _train(tmp_path)]
    assert all(n > 0.1 for n in logged)
    assert stepped == pytest.approx(logged, rel=1e-5)  # not clipped to 0 (which would stop training)


def test_the_last_update_is_logged_when_log_every_does_not_divide_max_updates(tmp_path):
    Trainer(_cfg(tmp_path, max_updates=8, log_every=3), ToyTask()).fit()
    assert [r["update"] for r in _train(tmp_path)] == [3, 6, 8]


def test_non_finite_steps_apart_are_no_streak(tmp_path):
    # batches 2 and 4 give NaN: two skipped steps, never two in a row, so max_consecutive_nan 2 does not stop the run
    Trainer(_cfg(tmp_path, max_updates=6, max_consecutive_nan=2), ToyTask(batches_per_epoch=10, nan_at={2, 4})).fit()
    train = _train(tmp_path)
    assert [r["update"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert train[-1]["nan_skipped"] == 2


def test_a_non_finite_loss_under_fp16_is_a_nan_skip_not_an_overflow(tmp_path):
    plain, nan = tmp_path / "plain", tmp_path / "nan"
    Trainer(_cfg(plain, max_updates=6, precision="fp16"), ToyTask(batches_per_epoch=10)).fit()
    Trainer(_cfg(nan, max_updates=6, precision="fp16"), ToyTask(batches_per_epoch=10, nan_at={7})).fit()
    p, n = _train(plain)[-1], _train(nan)[-1]
    assert (n["nan_skipped"], n["overflow_skipped"]) == (1, p["overflow_skipped"])


class _OverflowingToyTask(ToyTask):
    """Every gradient is infinite while the loss stays finite (an fp16 overflow at every step)."""

    def train_step(self, model, batch):
        loss, logs = super().train_step(model, batch)
        loss.register_hook(lambda g: g * float("inf"))
        return loss, logs


def test_a_loss_scale_equal_to_min_loss_scale_goes_on_and_the_one_below_stops(tmp_path):
    # 2^16 halved 21 times is min_loss_scale itself (not below it): the run stops at the 22nd overflow, at 2^-6
    with pytest.raises(TrainingError, match=r"fell to 0.0156, below min_loss_scale 0.03125, at update 0 \(22 "):
        Trainer(_cfg(tmp_path, precision="fp16", min_loss_scale=2.0**-5), _OverflowingToyTask(batches_per_epoch=30)).fit()
