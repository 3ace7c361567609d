"""A run started from --init resumes from its own checkpoint: the weights of --init are not read again, and --init may
be gone by then (moved, or a downloaded model cleaned up); the run ends as one that was never interrupted. A fresh
run still starts from --init's weights."""

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import xlsr.interop.init_model as init_model
from xlsr.errors import XlsrError
from xlsr.interop.huggingface import export_hf
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune
from xlsr.train.monitor import read_log
from xlsr.train.pretrain import PretrainConfig, PretrainTask, pretrain

from ._tones import write_tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

# XLS-R's layer kinds at a width a CPU trains in a second
MODEL = dict(conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)],
             extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True, hidden_size=32, num_layers=1,
             num_heads=2, ffn_dim=64, conv_pos=8, conv_pos_groups=4, final_dim=16, codevector_dim=16,
             num_codevectors_per_group=8, num_negatives=5, mask_prob=0.5, mask_length=3)  # fmt: skip
QUIET = dict(num_workers=0, progress=False, tensorboard=False, device="cpu", log_every=1)
PRETRAIN = dict(QUIET, max_tokens=64000, min_sample_size=8000, max_sample_size=16000, valid_every=0,
                feature_health_frames=0, warmup_updates=1)
TOKENS = ["<blank>", "<unk>", "a", "i", "u"]  # the tone corpus's phones


class Killed(Exception):
    """Stands for a kill (SIGKILL, a lost node) during an update: nothing after the last checkpoint is kept."""


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tones")
    write_tone_corpus(root, "train", 8, seed=0)
    return root


def write_init(kind: str, path: Path) -> Path:
    """An --init of `kind`: "<format> <architecture>", random weights."""
    torch.manual_seed(0)
    fmt, architecture = kind.split()
    cfg = Wav2Vec2Config(**MODEL)
    model = Wav2Vec2ForCTC(cfg, len(TOKENS)) if architecture == "ctc" else Wav2Vec2ForPreTraining(cfg)
    vocab = TOKENS if architecture == "ctc" else None
    if fmt == "hf":
        return export_hf(model, path, vocab, kind="phones")
    return save_checkpoint(path, model, vocab=vocab, metadata={"labels": "phones"} if vocab else None)


def killed_during(update: int, task_class):
    """`task_class.train_step` that raises Killed at the `update`-th update of a run (one micro-batch each)."""
    step, calls = task_class.train_step, []

    def train_step(self, model, batch):
        calls.append(update)
        if len(calls) == update:
            raise Killed
        return step(self, model, batch)
    return train_step


def counting(calls: list):
    """`load_pretrained`, counting its calls."""
    load = init_model.load_pretrained

    def load_pretrained(path, **kw):
        calls.append(Path(path))
        return load(path, **kw)
    return load_pretrained


def unreadable(path, **kw):
    raise AssertionError(f"{path}: the weights of --init were read on resume")


def assert_same_run(a: Path, b: Path) -> None:
    """The two runs' last checkpoints hold the same weights and model record, and their logs the same losses."""
    x, y = (load_file(run / "checkpoints" / "last" / "model.safetensors") for run in (a, b))
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), k
    assert ((a / "checkpoints" / "last" / "config.json").read_text()
            == (b / "checkpoints" / "last" / "config.json").read_text())
    losses = [[(r["update"], r["loss"]) for r in read_log(run / "log.jsonl") if r.get("split") == "train"]
              for run in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == 6


def resumed_twice(run, cfg, task_class, init: Path, monkeypatch, capsys) -> str:
    """`run(cfg)` killed during update 3 (checkpoint 2), resumed with --init's weights unreadable and killed during
    update 5 (checkpoint 4), then resumed to the end with --init moved away; what the two resumes wrote to stderr."""
    with monkeypatch.context() as m:
        m.setattr(task_class, "train_step", killed_during(3, task_class))
        with pytest.raises(Killed):
            run(cfg)
    assert os.readlink(Path(cfg.out) / "checkpoints" / "last") == "update_0000002"
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(task_class, "train_step", killed_during(3, task_class))
        m.setattr(init_model, "load_pretrained", unreadable)
        with pytest.raises(Killed):
            run(cfg)  # --init still there: read no further than its format (and, for ours, config.json)
    assert os.readlink(Path(cfg.out) / "checkpoints" / "last") == "update_0000004"
    shutil.move(init, init.with_name("moved"))
    run(cfg)  # the same command again, --init gone
    return capsys.readouterr().err


@pytest.mark.parametrize("kind", ["xlsr pretraining", "hf pretraining"])
def test_a_pretraining_run_resumes_without_reading_its_init(kind, tones, tmp_path, monkeypatch, capsys, caplog):
    init = write_init(kind, tmp_path / "init")

    def cfg(out):
        return PretrainConfig(data=str(tones), init=str(init), out=str(tmp_path / out), max_updates=6,
                              save_every=2, **PRETRAIN)

    loads = []
    monkeypatch.setattr(init_model, "load_pretrained", counting(loads))
    pretrain(cfg("straight"))
    assert loads == [init]  # a fresh run starts from --init's weights
    assert "continuing pretraining from" in capsys.readouterr().err  # a trained codebook: said at the start
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="xlsr"):
        err = resumed_twice(pretrain, cfg("killed"), PretrainTask, init, monkeypatch, capsys)
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
    assert "from update 2" in err and "from update 4" in err and "continuing pretraining" not in err
    assert f"{init} no longer exists; the run resumes from {tmp_path / 'killed' / 'checkpoints'}" in caplog.text


@pytest.mark.parametrize("kind", ["xlsr pretraining", "xlsr ctc", "hf ctc"])
def test_a_fine_tuning_run_resumes_without_reading_its_init(kind, tones, tmp_path, monkeypatch, capsys):
    init = write_init(kind, tmp_path / "init")

    def cfg(out):
        return FinetuneConfig(train=[str(tones / "xx" / "train.jsonl")], init=str(init), out=str(tmp_path / out),
                              max_updates=6, save_every=2, freeze_updates=3, max_tokens=64000, **QUIET)

    loads = []
    monkeypatch.setattr(init_model, "load_pretrained", counting(loads))
    finetune(cfg("straight"))
    assert loads == [init]
    monkeypatch.undo()
    resumed_twice(finetune, cfg("killed"), FinetuneTask, init, monkeypatch, capsys)
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
    saved = json.loads((tmp_path / "killed" / "checkpoints" / "last" / "config.json").read_text())
    # a CTC --init's vocabulary (and head) was kept; from a pretraining checkpoint, the labels' (the same tokens here)
    assert saved["vocab"] == TOKENS and saved["metadata"]["init"] == str(init)


def test_without_its_init_a_resumed_run_is_still_checked_against_its_checkpoint(tones, tmp_path):
    init = write_init("xlsr pretraining", tmp_path / "init")
    kw = dict(data=str(tones), init=str(init), out=str(tmp_path / "run"), max_updates=1, **PRETRAIN)
    pretrain(PretrainConfig(**kw))
    # --init there: its config.json (weights unread) says the architecture, as at the start: another one is refused
    torch.manual_seed(0)
    save_checkpoint(init, Wav2Vec2ForPreTraining(Wav2Vec2Config(**{**MODEL, "ffn_dim": 48})))
    with pytest.raises(XlsrError, match=r"run: holds a run with another model \(model.ffn_dim: 64 there, 48 now\)"):
        pretrain(PretrainConfig(**{**kw, "max_updates": 2}))
    shutil.rmtree(init)
    # --init gone: the run's checkpoint says it, and this command's --model.* overrides are compared against it
    task = PretrainTask(PretrainConfig(**{**kw, "max_updates": 2}))
    assert task.model_cfg.ffn_dim == 64 and task.init.model is None and task.init.pretrained
    with pytest.raises(XlsrError, match=r"run: holds a run with another model \(model.dropout: [\d.]+ there, 0.2 now\)"):
        pretrain(PretrainConfig(**{**kw, "max_updates": 2, "model": {"dropout": 0.2}}))
    with pytest.raises(XlsrError, match=r"model.ffn_dim: the --init checkpoint has 64, not 48"):
        PretrainTask(PretrainConfig(**{**kw, "model": {"ffn_dim": 48}}))
    pretrain(PretrainConfig(**{**kw, "max_updates": 2}))
    assert os.readlink(tmp_path / "run" / "checkpoints" / "last") == "update_0000002"


def test_a_resume_whose_checkpoints_vanish_before_it_starts_stops_instead_of_training_random_weights(tones, tmp_path):
    init = write_init("xlsr pretraining", tmp_path / "init")
    kw = dict(data=str(tones), init=str(init), out=str(tmp_path / "run"), **PRETRAIN)
    pretrain(PretrainConfig(max_updates=1, **kw))
    shutil.rmtree(init)
    task = PretrainTask(PretrainConfig(max_updates=2, **kw))
    shutil.rmtree(tmp_path / "run" / "checkpoints")  # (by hand, while the command read its data)
    with pytest.raises(XlsrError, match=r"run: its checkpoints are gone since this run read .*update_0000001; run the "
                                        r"command again"):
        task.build_model()


@pytest.fixture(scope="module")
def mms(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
    mms_fixtures = pytest.importorskip("mms_fixtures")
    return mms_fixtures.write_mms_dir(tmp_path_factory.mktemp("mms") / "mms-1b-all")


def test_an_adapter_run_for_a_new_language_resumes_without_its_mms_init(mms, tones, tmp_path, monkeypatch, capsys):
    init = shutil.copytree(mms, tmp_path / "mms")

    def cfg(out, lang="new"):
        return FinetuneConfig(train=[str(tones / "xx" / "train.jsonl")], init=str(init), out=str(tmp_path / out),
                              train_only="adapters", target_lang=lang, labels="chars", max_updates=6, save_every=2,
                              max_tokens=64000, lr=1e-2, **QUIET)

    finetune(cfg("straight"))
    resumed_twice(finetune, cfg("killed"), FinetuneTask, init, monkeypatch, capsys)
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
    assert (tmp_path / "killed" / "adapter" / "adapter.new.safetensors").is_file()  # exported from the run's own
    # the language is where the run's adapters and head came from: another one is another run
    with pytest.raises(XlsrError, match=r"killed: holds a run with target_lang 'new' \(config.yaml\), not 'fra'"):
        finetune(cfg("killed", lang="fra"))
