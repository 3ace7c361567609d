"""A run resumed with settings other than its RUN/config.yaml records: a change that cannot take effect is refused in
one line naming the setting, its recorded value and the given one (nothing in the folder touched); any other is
honoured from the resumed update on, in one line for the Trainer to say. A path spelled otherwise is no change."""

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from xlsr.config import config_to_dict
from xlsr.errors import XlsrError
from xlsr.interop.fairseq_export import export_fairseq
from xlsr.interop.huggingface import export_hf
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.train.finetune import FinetuneConfig, finetune
from xlsr.train.monitor import read_log
from xlsr.train.pretrain import PretrainConfig, pretrain
from xlsr.train.run_folder import check_config_file, check_run_folder, resume_checkpoint
from xlsr.train.schedules import learning_rate
from xlsr.train.trainer import Trainer

from ._tones import write_tone_corpus
from ._toy import ToyTask
from .test_resume_without_init import MODEL, PRETRAIN, QUIET, TOKENS
from .test_trainer import _cfg

pytestmark = pytest.mark.usefixtures("one_thread")



def toy_run(out: Path, **kw) -> Trainer:
    """The toy task trained into `out` as a task's command runs it: its resolved configuration into config.yaml."""
    cfg = _cfg(out, **kw)
    trainer = Trainer(cfg, ToyTask(dropout=0.2), resolved_config=config_to_dict(cfg))
    trainer.fit()
    return trainer


def resume_line(out: Path, **kw) -> str | None:
    """What the run-folder check says of resuming the toy run in `out` with `kw`."""
    return check_run_folder(out, config_to_dict(_cfg(out, **kw)), ToyTask(dropout=0.2).build_model())


def recorded(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_a_changed_learning_rate_length_and_interval_are_honoured_and_said_in_one_line(tmp_path):
    toy_run(tmp_path, max_updates=4)
    changed = dict(max_updates=8, lr=1e-2, valid_every=2, progress=True)
    assert resume_line(tmp_path, **changed) == (f"{tmp_path}: resumed with settings other than its config.yaml's, in "
                                                f"effect from here on: max_updates 4 -> 8; lr 0.03 -> 0.01; "
                                                f"valid_every 4 -> 2")  # (how the run is shown: no word)
    toy_run(tmp_path, **changed)
    records = read_log(tmp_path / "log.jsonl")
    new = _cfg(tmp_path, max_updates=8, lr=1e-2)
    assert [r["lr"] for r in records if r.get("split") == "train" and r["update"] > 4] == pytest.approx(
        [learning_rate(new, u) for u in range(4, 8)], rel=1e-6)
    assert [r["update"] for r in records if r.get("split") == "valid"] == [4, 6, 8]
    assert recorded(tmp_path)["lr"] == 0.01
    assert resume_line(tmp_path, **changed) is None  # the same command again: nothing changed


def test_another_seed_is_refused_on_resume_and_taken_by_a_fresh_start(tmp_path):
    toy_run(tmp_path, max_updates=4, seed=1)
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(XlsrError, match=r"^\S+: holds a run started with seed 1 \(config.yaml\), not 2: it acts only "
                                        r"when a run starts; give --seed 1 to resume, or choose another --out$"):
        toy_run(tmp_path, max_updates=8, seed=2)
    assert (tmp_path / "config.yaml").read_text() == before
    shutil.rmtree(tmp_path / "checkpoints")  # nothing to resume: a fresh start may have any seed
    toy_run(tmp_path, max_updates=4, seed=2)
    assert recorded(tmp_path)["seed"] == 2


def test_a_max_updates_below_the_update_reached_is_refused(tmp_path):
    toy_run(tmp_path, max_updates=8)
    with pytest.raises(XlsrError, match=r"^\S+: holds a run at update 8 \(update_0000008\), past max_updates 4; give "
                                        r"--max-updates 8 or more to resume, or choose another --out$"):
        toy_run(tmp_path, max_updates=4)
    assert recorded(tmp_path)["max_updates"] == 8
    assert toy_run(tmp_path, max_updates=8).update == 8  # the finished run, re-run as it was: nothing to do


# --- model overrides ---------------------------------------------------------------------------------------------

# the CNN narrower than the Transformer, as fairseq's export needs
WIDE = {**MODEL, "hidden_size": 48}


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tones")
    write_tone_corpus(root, "train", 8, seed=0)
    return root


def write_init(kind: str, path: Path, ctc: bool = False) -> Path:
    """An --init in format `kind` (xlsr, hf, fairseq) with random weights: a pretraining or (`ctc`) CTC model."""
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(**WIDE)
    model, vocab = (Wav2Vec2ForCTC(cfg, len(TOKENS)), TOKENS) if ctc else (Wav2Vec2ForPreTraining(cfg), None)
    if kind == "hf":
        return export_hf(model, path, vocab, kind="phones" if ctc else None)
    if kind == "fairseq":
        return export_fairseq(model, path, vocab, kind="phones" if ctc else None)
    return save_checkpoint(path, model, vocab=vocab, metadata={"labels": "phones"} if ctc else None)


@pytest.mark.parametrize("kind", ["hf", "fairseq", "xlsr gone", "xlsr", "none"])
def test_a_model_override_left_out_or_changed_on_resume_is_refused_whatever_the_init(kind, tones, tmp_path):
    init = None if kind == "none" else write_init(kind.split()[0], tmp_path / "init")
    run = tmp_path / "run"
    # no --init: the preset's architecture, made small by overrides that every command below gives
    sizes = {k: v for k, v in WIDE.items() if k != "mask_prob"} if init is None else {}

    def cfg(max_updates, **model):
        return PretrainConfig(data=str(tones), init=init and str(init), out=str(run), max_updates=max_updates,
                              model={**sizes, **model}, **PRETRAIN)

    pretrain(cfg(1, mask_prob=0.3))
    if kind == "xlsr gone":
        shutil.rmtree(init)
    before = (run / "config.yaml").read_text()
    if kind in ("xlsr", "none"):  # --init's config.json, or the preset: the value the override replaced is known
        known = 0.5 if init else Wav2Vec2Config.preset("tiny").mask_prob
        left_out = rf"holds a run with another model \(model.mask_prob: 0.3 there, {known} now\); choose another --out$"
    else:  # the model comes from the run's checkpoint alone
        left_out = (r"holds a run with model.mask_prob 0.3 \(config.yaml\), not given now; a resume from \S+ takes "
                    r"the model as its checkpoint records it, where the value of --init is not kept: give "
                    r"--model.mask_prob 0.3 to resume, or choose another --out$")
    with pytest.raises(XlsrError, match=f"^{run}: {left_out}"):
        pretrain(cfg(2))
    with pytest.raises(XlsrError, match=rf"^{run}: holds a run with another model \(model.mask_prob: 0.3 there, 0.4 now\)"):
        pretrain(cfg(2, mask_prob=0.4))
    assert (run / "config.yaml").read_text() == before
    pretrain(cfg(2, mask_prob=0.3))  # the same override again: resumed
    assert (run / "checkpoints" / "last").resolve().name == "update_0000002"


def finetune_cfg(tones: Path, init: Path, run: Path, max_updates: int, **kw) -> FinetuneConfig:
    return FinetuneConfig(train=[str(tones / "xx" / "train.jsonl")], init=str(init), out=str(run),
                          max_updates=max_updates, freeze_updates=0, max_tokens=64000, **{**QUIET, **kw})


def test_a_fine_tuning_override_left_out_on_resume_from_a_hugging_face_init_is_refused(tones, tmp_path):
    init = write_init("hf", tmp_path / "init", ctc=True)
    run = tmp_path / "run"
    finetune(finetune_cfg(tones, init, run, 1, model={"dropout_features": 0.2}))  # not a fine-tuning default
    with pytest.raises(XlsrError, match=r"holds a run with model.dropout_features 0.2 \(config.yaml\), not given now"):
        finetune(finetune_cfg(tones, init, run, 2))
    finetune(finetune_cfg(tones, init, run, 2, model={"dropout_features": 0.2}))
    assert (run / "checkpoints" / "last").resolve().name == "update_0000002"


@pytest.mark.parametrize(("key", "value", "shown"), [("blank_bias", 2.0, "2.0"),
                                                     ("freeze_feature_encoder", False, "false")])
def test_a_fine_tuning_setting_that_acts_only_at_the_start_is_refused_on_resume(key, value, shown, tones, tmp_path):
    init = write_init("xlsr", tmp_path / "init")
    run = tmp_path / "run"
    finetune(finetune_cfg(tones, init, run, 1))
    old = recorded(run)[key]
    with pytest.raises(XlsrError, match=rf"holds a run started with {key} {str(old).lower()} \(config.yaml\), not "
                                        rf"{shown}: it acts only when a run starts; give --{key.replace('_', '-')} "
                                        rf"{str(old).lower()} to resume"):
        finetune(finetune_cfg(tones, init, run, 2, **{key: value}))


def test_an_init_and_data_spelled_otherwise_are_no_change(tones, tmp_path, monkeypatch):
    write_init("xlsr", tmp_path / "init")
    (tmp_path / "corpus").symlink_to(tones)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    pretrain(PretrainConfig(data="corpus", init="init", out=str(run), max_updates=1, **PRETRAIN))
    again = PretrainConfig(data=str(tones), init=str(tmp_path / "init"), out=str(run), max_updates=2, **PRETRAIN)
    assert check_config_file(run, config_to_dict(again), resume_checkpoint(run)) == ["max_updates 1 -> 2"]
    pretrain(again)
    assert (run / "checkpoints" / "last").resolve().name == "update_0000002"
def test_the_trainer_says_the_changed_settings_once_the_resume_is_accepted(tmp_path, capsys):
    toy_run(tmp_path, max_updates=4)
    capsys.readouterr()
    toy_run(tmp_path, max_updates=8, lr=1e-2)
    said = (f"{tmp_path}: resumed with settings other than its config.yaml's, in effect from here on: "
            f"max_updates 4 -> 8; lr 0.03 -> 0.01")
    assert capsys.readouterr().err.splitlines().count(f"xlsr: warning: update 4: {said}") == 1
    assert [r["message"] for r in read_log(tmp_path / "log.jsonl") if r.get("warning") == "settings"] == [said]


def test_a_finished_run_refuses_settings_it_would_not_train_with(tmp_path):
    toy_run(tmp_path, max_updates=4)
    with pytest.raises(XlsrError, match=rf"^{tmp_path}: holds a finished run \(update 4 of 4\), so lr 0.03 -> 0.01 "
                                        r"would not take effect; give a --max-updates above 4"):
        toy_run(tmp_path, max_updates=4, lr=1e-2)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lr"] == 0.03  # the record stays the model's
    toy_run(tmp_path, max_updates=4)  # the same command: finished, nothing said
    toy_run(tmp_path, max_updates=6, lr=1e-2)  # on with them: honoured


def test_a_finished_run_re_run_on_another_machine_goes_on_quietly(tmp_path, capsys):
    toy_run(tmp_path, max_updates=4, device="cpu")
    capsys.readouterr()
    toy_run(tmp_path, max_updates=4, device="auto")  # as the release builder re-run without --device
    assert "resumed with settings other than" not in capsys.readouterr().err
