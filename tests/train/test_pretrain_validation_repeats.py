"""Pretraining's validations are comparable across updates and resumes: the same masks and negatives at every
validation (so `best` compares models, not draws), and the probe's schedule carried over a resume."""

import os
import signal

from xlsr.train import pretrain as pretrain_mod
from xlsr.train.monitor import read_log
from xlsr.train.pretrain import pretrain

from .test_pretrain import _cfg, _labeled_manifest, data  # noqa: F401 - `data` is the module's corpus fixture


def _valid(run):
    return [r for r in read_log(run / "log.jsonl") if r.get("split") == "valid"]


def test_the_same_model_validates_to_the_same_figures_at_every_validation(data, tmp_path):  # noqa: F811
    # lr 0: the weights never change, so two validations differ only if their random draws do
    run = pretrain(_cfg(data, tmp_path / "run", max_updates=2, lr=0.0, valid_every=1, feature_health_frames=0))
    first, second = _valid(run)
    assert (first["update"], second["update"]) == (1, 2)
    for key in ("contrastive_loss", "accuracy", "sample_size"):
        assert first[key] == second[key], key


def test_a_resume_runs_the_probe_where_the_straight_run_does(data, tmp_path, monkeypatch):  # noqa: F811
    probe = _labeled_manifest(data, tmp_path)
    kw = dict(max_updates=3, valid_every=1, feature_health_frames=0, probe_every=2, probe_data=[str(probe)],
              probe_steps=20)
    straight = pretrain(_cfg(data, tmp_path / "straight", **kw))

    step = pretrain_mod.PretrainTask.train_step
    calls = {"n": 0}

    def interrupted(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during update 2: saved after its validation and probe
        return step(self, model, batch)

    monkeypatch.setattr(pretrain_mod.PretrainTask, "train_step", interrupted)
    resumed = pretrain(_cfg(data, tmp_path / "resumed", **kw))
    monkeypatch.undo()
    assert os.readlink(resumed / "checkpoints" / "last") == "update_0000002"
    pretrain(_cfg(data, tmp_path / "resumed", **kw))

    def probed(run):
        return [(r["update"], "probe_feature_per" in r) for r in _valid(run)]
    assert probed(straight) == [(0, True), (1, False), (2, True), (3, False)]
    assert probed(resumed) == probed(straight)  # update 3 is one update after the probe of update 2
