"""The audio a pretraining run trained on, per language: run totals in every train record (`trained_s.<lang>`, the
crops as drawn), kept in checkpoints so that a resumed run counts on exactly, summed over DDP ranks, and a closing
table beside the share sampling at α aims at (README: a first-class α sampler with per-language statistics)."""

import os
import socket

import pytest
import torch

from xlsr.data.sampling import trained_table
from xlsr.train import checkpoint as ckpt
from xlsr.train.distributed import DistInfo
from xlsr.train.monitor import LogWindow, read_log
from xlsr.train.pretrain import PretrainConfig, PretrainTask, pretrain
from xlsr.train.trainer import Trainer, TrainerConfig

from . import _ranks
from ._audio import TINY_MODEL, make_corpus
from ._toy import ToyTask


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_table_sets_the_audio_trained_on_beside_the_share_aimed_at():
    table = trained_table({"aa": 3.0, "bb": 1.0}, 0.5, {"aa": 5400.0, "bb": 1800.0, "cc": 3600.0})
    assert table.splitlines() == [
        "lang      trained h    share    p(α=0.5)",
        "aa            1.500    50.0%       63.4%",  # 3**0.5 / (3**0.5 + 1)
        "bb            0.500    16.7%       36.6%",
        "cc            1.000    33.3%           -",  # trained before a resume on other data
    ]


def test_a_record_holds_the_task_s_run_totals_at_its_update():
    window = LogWindow(("trained_s.aa",))
    window.add({"loss": 2.0, "trained_s.aa": 4.0}, seconds=1.0, audio_seconds=4.0)
    window.add({"loss": 4.0, "trained_s.aa": 9.0}, seconds=1.0, audio_seconds=5.0)
    assert window.summary() == {"loss": 3.0, "trained_s.aa": 9.0}


class _CountingToy(ToyTask):
    """Each micro-batch trains on 1 s of `aa` and (rank + 2) s of `bb`."""

    counted_logs = ("trained_s.aa", "trained_s.bb")
    summed_logs = ("sample_size", *counted_logs)

    def train_step(self, model, batch):
        loss, logs = super().train_step(model, batch)
        return loss, {**logs, "trained_s.aa": 1.0, "trained_s.bb": float(self.info.rank + 2)}


def _toy_cfg(out, **kw):
    return TrainerConfig(**{**dict(out=str(out), max_updates=4, lr=1e-2, warmup_updates=0, device="cpu", log_every=1,
                                   valid_every=0, save_every=0, progress=False, tensorboard=False), **kw})


def test_the_totals_count_every_micro_batch_and_go_on_exactly_after_a_resume(tmp_path):
    straight = Trainer(_toy_cfg(tmp_path / "a", update_freq=2), _CountingToy()).fit()
    Trainer(_toy_cfg(tmp_path / "b", update_freq=2, max_updates=3), _CountingToy()).fit()
    resumed = Trainer(_toy_cfg(tmp_path / "b", update_freq=2), _CountingToy()).fit()
    for run in (straight, resumed):
        records = [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"]
        assert [(r["trained_s.aa"], r["trained_s.bb"]) for r in records] == [(2.0 * u, 4.0 * u) for u in (1, 2, 3, 4)]
        state = ckpt.load_trainer_state(run / "checkpoints" / "last")
        assert state["run_totals"] == {"trained_s.aa": 8.0, "trained_s.bb": 16.0} and state["run_totals_since"] == 0


def test_a_checkpoint_of_an_earlier_version_counts_from_its_update(tmp_path):
    Trainer(_toy_cfg(tmp_path / "run", max_updates=2), _CountingToy()).fit()
    last = tmp_path / "run" / "checkpoints" / "last"
    state = ckpt.load_trainer_state(last)
    del state["run_totals"], state["run_totals_since"]
    torch.save(state, last.resolve() / ckpt.TRAINER_FILE)
    trainer = Trainer(_toy_cfg(tmp_path / "run"), _CountingToy())
    trainer.fit()
    assert (trainer.run_totals, trainer.run_totals_since) == ({"trained_s.aa": 2.0, "trained_s.bb": 4.0}, 2)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Trainer(_toy_cfg(out, max_updates=3), _CountingToy(rows=4)).fit()


def test_under_ddp_the_totals_are_every_rank_s(tmp_path):
    _ranks.run(_ddp_worker, (2, _free_port(), str(tmp_path / "ddp")))
    records = [r for r in read_log(tmp_path / "ddp" / "log.jsonl") if r.get("split") == "train"]
    assert [(r["trained_s.aa"], r["trained_s.bb"]) for r in records] == [(2.0, 5.0), (4.0, 10.0), (6.0, 15.0)]


def _cfg(data, out, **kw):
    return PretrainConfig(**{**dict(
        data=str(data), out=str(out), preset="tiny", model=dict(TINY_MODEL), max_updates=4, lr=2e-3, warmup_updates=2,
        max_tokens=64000, min_sample_size=8000, max_sample_size=16000, num_workers=0, log_every=2, valid_every=0,
        save_every=0, progress=False, tensorboard=False, device="cpu", feature_health_frames=0), **kw})


def test_pretraining_logs_the_crops_it_trained_on_by_language_and_says_them_at_the_end(tmp_path, capsys):
    data = make_corpus(tmp_path / "tones", langs=("aa", "bb"), per_lang=6, splits=("train",))
    cfg = _cfg(data, tmp_path / "run", alpha=0.3)
    # the reference: the loader's first 4 batches (epoch after epoch), cropped as the task crops them
    task = PretrainTask(cfg)
    task.setup(DistInfo())
    expected = {"aa": 0.0, "bb": 0.0}
    epochs = (batch for epoch in range(4) for batch in task.train_batches(epoch))
    for _, batch in zip(range(4), epochs):
        batch = task._crop(batch)
        for lang in batch.langs:
            expected[lang] += batch.waveforms.shape[1] / 16000
    run = pretrain(_cfg(data, tmp_path / "run", alpha=0.3, progress=True))
    last = [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"][-1]
    assert last["trained_s.aa"] == pytest.approx(expected["aa"]) and last["trained_s.bb"] == pytest.approx(expected["bb"])
    assert expected["aa"] > 0 and expected["bb"] > 0
    said = capsys.readouterr().err
    assert "audio trained on, by language" in said
    total = expected["aa"] + expected["bb"]
    assert f"aa      {expected['aa'] / 3600:>11.3f}{expected['aa'] / total:>9.1%}" in said


def test_the_run_writes_the_shares_sampling_aims_at_and_the_plot_draws_the_shares_trained_on_against_them(tmp_path,
                                                                                                          monkeypatch):
    import json

    from xlsr.data.sampling import language_weights
    from xlsr.train.curves import plot_training_curves

    data = make_corpus(tmp_path / "tones", langs=("aa", "bb"), per_lang=6, splits=("train",))
    run = pretrain(_cfg(data, tmp_path / "run", alpha=0.3, log_every=1))
    report = json.loads((run / "sampling.json").read_text())
    hours = {lang: v["hours"] for lang, v in report["languages"].items()}
    assert report["alpha"] == 0.3 and set(hours) == {"aa", "bb"}
    assert {lang: v["p"] for lang, v in report["languages"].items()} == pytest.approx(language_weights(hours, 0.3))

    import matplotlib.figure

    drawn = {}
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **kw: (drawn.setdefault("fig", fig), original(fig, *a, **kw)))
    plot_training_curves(run)
    ax = next(a for a in drawn["fig"].axes if a.get_title().startswith("share of audio trained on"))
    records = [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"]
    curves = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines() if not line.get_label().startswith("_")}
    for lang in ("aa", "bb"):
        assert curves[lang] == pytest.approx([100 * r[f"trained_s.{lang}"] / (r["trained_s.aa"] + r["trained_s.bb"])
                                              for r in records])
    dashed = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--")
    assert dashed == pytest.approx(sorted(100 * v["p"] for v in report["languages"].values()))
