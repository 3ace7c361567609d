"""Real pretraining on synthetic tones with a very small model: exact resume, --init, CLI errors, plots."""

import math
import os
import signal

import pytest
import torch
import yaml

from xlsr.cli.main import main
from xlsr.errors import XlsrError
from xlsr.train import pretrain as pretrain_mod
from xlsr.train.monitor import read_log
from xlsr.train.pretrain import PretrainConfig, PretrainTask, pretrain

from ._audio import TINY_MODEL, make_corpus
from ._toy import load_weights

# one torch thread: these small models run several times slower on two threads of a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("tones"))


def _cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), preset="tiny", model=dict(TINY_MODEL), max_updates=6, lr=2e-3,
                warmup_updates=2, max_tokens=64000, min_sample_size=8000, max_sample_size=16000, num_workers=0,
                log_every=1, valid_every=0, save_every=0, progress=False, tensorboard=False, device="cpu")
    base.update(kw)
    return PretrainConfig(**base)


def test_stop_and_resume_ends_identical_to_straight_run(data, tmp_path, monkeypatch):
    pretrain(_cfg(data, tmp_path / "straight", max_updates=4))

    step = pretrain_mod.PretrainTask.train_step
    calls = {"n": 0}

    def interrupted(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during update 3 (an epoch has 2 batches)
        return step(self, model, batch)

    monkeypatch.setattr(pretrain_mod.PretrainTask, "train_step", interrupted)
    pretrain(_cfg(data, tmp_path / "resumed", max_updates=4))
    monkeypatch.undo()
    assert os.readlink(tmp_path / "resumed" / "checkpoints" / "last") == "update_0000003"
    pretrain(_cfg(data, tmp_path / "resumed", max_updates=4))  # the same command again

    a = load_weights(tmp_path / "straight" / "checkpoints" / "last")
    b = load_weights(tmp_path / "resumed" / "checkpoints" / "last")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    la = [(r["update"], r["loss"]) for r in read_log(tmp_path / "straight" / "log.jsonl") if r.get("split") == "train"]
    lb = [(r["update"], r["loss"]) for r in read_log(tmp_path / "resumed" / "log.jsonl") if r.get("split") == "train"]
    assert la == lb and len(la) == 4
    # validation per language at the end, and `best` chosen by validation contrastive loss
    records = read_log(tmp_path / "straight" / "log.jsonl")
    assert {r["split"] for r in records if "split" in r} >= {"train", "valid", "valid_aa", "valid_bb"}
    assert (tmp_path / "straight" / "checkpoints" / "best" / "model.safetensors").is_file()
    saved = yaml.safe_load((tmp_path / "straight" / "config.yaml").read_text())
    assert saved["model"]["hidden_size"] == 32 and saved["max_updates"] == 4
    # the loss and its terms in one unit (bits per masked frame), and each record's code perplexity ceiling
    model = pretrain_mod.resolve_model_config(_cfg(data, tmp_path / "straight"))
    codebook = model.num_codevector_groups * model.num_codevectors_per_group
    for r in records:
        if r.get("split") in ("train", "valid"):
            penalty = r["feature_penalty"] if model.feature_penalty_weight else 0.0
            assert r["loss"] == pytest.approx(r["contrastive_loss"] + r["diversity_loss"] + penalty, rel=1e-6)
            assert 0 < r["code_perplexity"] <= r["code_perplexity_max"] <= codebook


def test_init_loads_weights_and_keeps_the_temperature_schedule(data, tmp_path):
    pretrain(_cfg(data, tmp_path / "first", max_updates=2))
    src = load_weights(tmp_path / "first" / "checkpoints" / "last")
    task = PretrainTask(_cfg(data, tmp_path / "second", init=str(tmp_path / "first" / "checkpoints" / "last"),
                             model={}))
    model = task.build_model()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, src[k], msg=k)
    assert task.model_cfg.hidden_size == 32  # the architecture comes from the checkpoint, not the preset


def _cli(*args):
    return main(["pretrain", *map(str, args)])


def test_cli_errors_are_one_line_and_touch_nothing(data, tmp_path, capsys):
    run = tmp_path / "run"
    cfg_yaml = tmp_path / "run.yaml"
    cfg_yaml.write_text(yaml.safe_dump({"model": TINY_MODEL, "max_tokens": 64000, "min_sample_size": 8000,
                                        "max_sample_size": 16000, "num_workers": 0, "progress": False,
                                        "tensorboard": False, "device": "cpu", "valid_every": 0}))
    common = ["--config", cfg_yaml, "--max-updates", 2]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--data", empty, "--out", run], "no manifests"),
        (["--data", data, "--out", run, "--alpha", 1.5], "alpha: must be in [0, 1]"),
        (["--data", data, "--out", run, "--langs", ""], "langs: give at least one language code"),
        (["--data", data, "--out", run, "--preset", "huge"], "unknown preset 'huge'"),
        (["--data", data, "--out", run, "--model.mask_prob", "x"], "model.mask_prob"),
        (["--data", data, "--out", run, "--recipe", "nope"], "--recipe nope: no such pretrain recipe"),
        (["--data", data, "--out", run, "--adam-betas", "0.9,1.5"], "adam_betas: each must be in [0, 1)"),
        (["--data", data, "--out", run, "--adam-eps", -1], "adam_eps: must be at least 0"),
        (["--data", data, "--out", run, "--model.latent-temp", "2,0.5,1.5"], "latent_temp"),
    ]
    for args, words in cases:
        assert _cli(*common, *args) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and err.count("\n") == 0, err
    assert not run.exists()
    finetune_run = tmp_path / "ft"  # what `xlsr finetune` leaves: its config.yaml has labels, no data folder
    finetune_run.mkdir()
    (finetune_run / "config.yaml").write_text("init: runs/pt\nlabels: phones\ntrain: [a.jsonl]\n")
    assert _cli(*common, "--data", data, "--out", finetune_run) == 2
    err = capsys.readouterr().err.strip()
    assert "ft: holds another kind of run" in err and err.count("\n") == 0, err
    assert [p.name for p in finetune_run.iterdir()] == ["config.yaml"]

    assert _cli(*common, "--data", data, "--out", run, "--lr", "1e-3") == 0
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _cli(*common, "--data", data, "--out", run, "--model.hidden_size", 64, "--model.ffn_dim", 64) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run with another model (model.hidden_size: 32 there, 64 now)" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before

    # a corrupt checkpoint: one line, nothing overwritten
    weights = run / "checkpoints" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert _cli(*common, "--data", data, "--out", run, "--max-updates", 4) == 2
    err = capsys.readouterr().err.strip()
    assert "model.safetensors" in err and err.count("\n") == 0

    assert main(["plot", str(run), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_unreadable_audio_is_skipped_up_to_max_bad_share(tmp_path):
    data = make_corpus(tmp_path / "tones")
    (data / "aa" / "wav" / "train_0.wav").write_bytes(b"RIFF broken")  # 1 of the 8 training files
    with pytest.raises(XlsrError, match=r"1 of 8 audio files .* more than max_bad_share=0"):
        pretrain(_cfg(data, tmp_path / "strict", max_updates=2, max_bad_share=0.0))
    run = pretrain(_cfg(data, tmp_path / "lenient", max_updates=2, max_bad_share=0.2))
    assert (run / "checkpoints" / "last").is_dir()


def test_activation_checkpointing_run_matches_a_plain_run(data, tmp_path, monkeypatch):
    """The trainer turns checkpointing on from the config; the run's losses and weights stay those of a plain run."""
    import xlsr.model.recompute as recompute

    calls = []
    real = recompute.checkpoint
    monkeypatch.setattr(recompute, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    plain = pretrain(_cfg(data, tmp_path / "plain", max_updates=3))
    assert not calls
    ckpt = pretrain(_cfg(data, tmp_path / "ckpt", max_updates=3, activation_checkpointing=True))
    assert calls  # the layers did run through torch.utils.checkpoint
    la, lb = train_losses(plain), train_losses(ckpt)
    assert len(la) == 3
    torch.testing.assert_close(torch.tensor(lb), torch.tensor(la), rtol=1e-5, atol=1e-6)
    a, b = load_weights(plain / "checkpoints" / "last"), load_weights(ckpt / "checkpoints" / "last")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=k)
    saved = yaml.safe_load((ckpt / "config.yaml").read_text())
    assert saved["activation_checkpointing"] is True


def test_out_of_memory_is_one_line_with_advice_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    pretrain(_cfg(data, run, max_updates=2, save_every=1))
    saved = {p: p.read_bytes() for p in (run / "checkpoints" / "last").iterdir()}

    def out_of_memory(self, model, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pretrain_mod.PretrainTask, "train_step", out_of_memory)
    yaml_cfg = tmp_path / "run.yaml"
    yaml_cfg.write_text(yaml.safe_dump({k: v for k, v in vars(_cfg(data, run, max_updates=4)).items()}))
    assert _cli("--config", yaml_cfg) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    err = err.splitlines()[-1]  # after the run's own info lines (language table, "resuming ...")
    assert err.startswith("xlsr: error:") and "out of cpu memory at update 2 on a batch of" in err
    assert "lower --max-tokens (now 64000)" in err and "--activation-checkpointing true" in err
    assert {p: p.read_bytes() for p in (run / "checkpoints" / "last").iterdir()} == saved


@pytest.mark.parametrize("where, words", [
    ("valid", "validating a batch of"),
    ("optimizer", "in the optimizer step; the optimizer's state does not fit beside the model"),
])
def test_out_of_memory_in_validation_or_the_optimizer_step_is_one_line_too(data, tmp_path, monkeypatch, where, words):
    from xlsr.train.trainer import TrainingError

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    if where == "valid":
        monkeypatch.setattr(pretrain_mod.PretrainTask, "valid_step", out_of_memory)
    else:
        monkeypatch.setattr(torch.optim.AdamW, "step", out_of_memory)
    with pytest.raises(TrainingError, match=f"out of cpu memory at update 0 {words}"):
        pretrain(_cfg(data, tmp_path / "run", max_updates=2, valid_every=1))


def test_a_resume_with_other_parameter_groups_is_one_line(data, tmp_path):
    from xlsr.errors import CheckpointError

    run = tmp_path / "run"
    pretrain(_cfg(data, run, max_updates=1, save_every=1))
    with pytest.raises(CheckpointError, match=r"its optimizer's parameter groups differ from this run's "
                                              r"\(feature_encoder_lr_scale 1 there, 0.1 now: .*"
                                              r"give --feature-encoder-lr-scale 1 to resume"):
        pretrain(_cfg(data, run, max_updates=2, feature_encoder_lr_scale=0.1))


def test_a_stop_at_an_epochs_end_after_a_batch_that_yielded_nothing_resumes_in_the_next_epoch(tmp_path):
    from xlsr.train import checkpoint as ckpt

    data = make_corpus(tmp_path / "tones", per_lang=3, splits=("train",))
    # one utterance per batch: the planned batch of this file yields nothing, but the loader's position counts it
    sorted((data / "aa" / "wav").glob("train_*.wav"))[1].write_bytes(b"not a wav file" * 10)
    kw = dict(lr_schedule="constant", warmup_updates=0, max_utterances=1, max_bad_share=0.5,
              feature_health_frames=0)
    pretrain(_cfg(data, tmp_path / "straight", max_updates=8, **kw))
    pretrain(_cfg(data, tmp_path / "split", max_updates=5, **kw))  # 6 planned batches, 5 yielded: the epoch's end
    saved = ckpt.load_trainer_state(tmp_path / "split" / "checkpoints" / "last")
    loader = saved["task"][0]["loader"]
    assert (saved["epoch"], saved["batches_in_epoch"]) == (0, 5) and (loader["epoch"], loader["position"]) == (0, 6)
    pretrain(_cfg(data, tmp_path / "split", max_updates=8, **kw))  # goes on with epoch 1, not epoch 0 again
    assert_same_training(tmp_path / "straight", tmp_path / "split")


def test_reseed_gives_the_mask_generator_a_new_state(data, tmp_path):
    from xlsr.train.distributed import DistInfo

    task = PretrainTask(_cfg(data, tmp_path / "run"))
    task.setup(DistInfo())
    saved = task.state_dict()["generator"]
    task.reseed(12345)  # what a resume with another number of processes calls on each rank, with its own seed
    assert not torch.equal(task.generator.get_state(), saved)
    assert torch.equal(task.generator.get_state(), torch.Generator().manual_seed(12345).get_state())


def train_losses(run) -> list[float]:
    return [r["loss"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"]


def assert_same_training(a_run, b_run) -> None:
    """The two runs logged the same training losses and ended with bit-identical weights."""
    assert train_losses(a_run) == train_losses(b_run)
    a, b = load_weights(a_run / "checkpoints" / "last"), load_weights(b_run / "checkpoints" / "last")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _valid_records(run):
    return [r for r in read_log(run / "log.jsonl") if r.get("split") == "valid"]


def test_feature_health_is_measured_at_start_and_a_forced_collapse_warns(data, tmp_path, monkeypatch, capsys):
    start = pretrain_mod.PretrainTask.on_update_start

    def collapse_cnn_before_update_2(self, model, update):
        if update == 1:  # every channel of the last CNN layer but the first made silent
            with torch.no_grad():
                for p in model.wav2vec2.feature_encoder.conv_layers[-1].parameters():
                    p[1:] = 0.0
        return start(self, model, update)

    monkeypatch.setattr(pretrain_mod.PretrainTask, "on_update_start", collapse_cnn_before_update_2)
    run = tmp_path / "run"
    pretrain(_cfg(data, run, max_updates=2, valid_every=1, lr=1e-6))
    monkeypatch.undo()
    valid = _valid_records(run)
    assert [r["update"] for r in valid] == [0, 1, 2]
    init = valid[0]["feature_eff_dim"]
    assert init > 4 and all(r["feature_eff_dim_init"] == init for r in valid)
    assert all(r["context_eff_dim_init"] == valid[0]["context_eff_dim"] for r in valid)
    assert valid[1]["feature_eff_dim"] > 0.25 * init > valid[2]["feature_eff_dim"]
    warnings = [r for r in read_log(run / "log.jsonl") if "warning" in r]
    assert [(r["update"], r["warning"]) for r in warnings if "collapse" in r["warning"]][:1] == \
        [(2, "valid_feature_collapse")]
    # the input's log-mel dimension: measured on the same frames at every validation, so the same each time
    audio = valid[0]["input_eff_dim"]
    assert 1 < audio < 80 and all(r["input_eff_dim"] == audio for r in valid)
    err = capsys.readouterr().err
    assert f"CNN features (after feature_norm) collapsed: effective dimension {valid[2]['feature_eff_dim']:.1f} " \
        f"(the input's log-mel spectrum: {audio:.1f})" in err
    # resume keeps the value at initialisation (no validation "at start" again, no new reference)
    pretrain(_cfg(data, run, max_updates=3, valid_every=1, lr=1e-6))
    valid = _valid_records(run)
    assert [r["update"] for r in valid] == [0, 1, 2, 3] and valid[-1]["feature_eff_dim_init"] == init
    assert "no value at initialisation" not in capsys.readouterr().err


def test_feature_health_leaves_training_unchanged_and_can_be_off(data, tmp_path):
    off = pretrain(_cfg(data, tmp_path / "off", max_updates=3, valid_every=1, feature_health_frames=0))
    valid = _valid_records(off)
    assert [r["update"] for r in valid] == [1, 2, 3] and "feature_eff_dim" not in valid[0]
    on = pretrain(_cfg(data, tmp_path / "on", max_updates=3, valid_every=1))
    assert [r["update"] for r in _valid_records(on)] == [0, 1, 2, 3]
    # the validation at start and the unmasked forward draw nothing from the training's random state
    assert_same_training(off, on)


def _labeled_manifest(data, tmp_path, field="phones"):
    """The corpus's dev utterances with made-up labels (the probe's wiring, not its accuracy, is tested here)."""
    from xlsr.data.manifest import read_split, write_manifest

    utts = read_split(data, "dev")
    for i, u in enumerate(utts):
        setattr(u, field, ["a b c", "b c d a", "d a"][i % 3])
    path = tmp_path / f"probe_{field}.jsonl"
    write_manifest(path, utts)
    return path


def test_probe_runs_every_n_updates_and_leaves_training_unchanged(data, tmp_path):
    probe = _labeled_manifest(data, tmp_path)
    kw = dict(max_updates=3, valid_every=1, feature_health_frames=0)
    plain = pretrain(_cfg(data, tmp_path / "plain", **kw))
    probed = pretrain(_cfg(data, tmp_path / "probed", probe_every=2, probe_data=[str(probe)], probe_steps=20, **kw))
    valid = _valid_records(probed)
    assert [r["update"] for r in valid] == [0, 1, 2, 3]
    assert [("probe_feature_per" in r, "probe_context_per" in r) for r in valid] == \
        [(True, True), (False, False), (True, True), (False, False)]
    assert all(r[k] >= 0.0 and math.isfinite(r[k]) for r in valid[::2] for k in ("probe_feature_per", "probe_context_per"))
    # the probe draws nothing from the training's random state: the same losses and weights
    assert_same_training(plain, probed)


def test_probe_data_without_labels_is_one_line_before_training(data, tmp_path, capsys):
    chars_only = _labeled_manifest(data, tmp_path, field="text")
    run = tmp_path / "run"
    common = ["--data", data, "--out", run, "--model.hidden_size", 32, "--max-updates", 2, "--device", "cpu",
              "--probe-every", 2]
    assert _cli(*common, "--probe-data", chars_only) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"xlsr: error: probe_data {chars_only}: no utterance has a 'phones' label (probe_labels: phones)"
    assert _cli(*common) == 2
    assert "probe_every, probe_data: the probe needs both" in capsys.readouterr().err
    assert not run.exists()


def test_bad_manifest_lines_are_skipped_under_max_bad_share_or_refuse_the_run(data, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns(".*"))
    manifest = sorted(copy.glob("*/train.jsonl"))[0]
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines + ['{"audio": "x.flac", "lang": "it"}']) + "\n")
    bad_share = 1 / (len(lines) + 1)
    task = PretrainTask(_cfg(copy, tmp_path / "run", max_bad_share=bad_share))  # one bad line: at the cap
    assert len(task.train_utts) == sum(len(p.read_text().splitlines()) for p in copy.glob("*/train.jsonl")) - 1
    with pytest.raises(XlsrError, match=rf"^{manifest}:{len(lines) + 1}: missing field\(s\) num_samples \(1 of "):
        PretrainTask(_cfg(copy, tmp_path / "run", max_bad_share=bad_share / 2))


def test_sigterm_to_the_whole_job_saves_like_ctrl_c(data, tmp_path, monkeypatch):
    """A scheduler's stop signals every process of the job, data workers included: the run still finishes the
    update and saves (a worker dying of SIGTERM used to make the DataLoader raise in the trainer mid-update)."""
    import multiprocessing
    import subprocess
    import time

    step = pretrain_mod.PretrainTask.train_step
    calls = {"n": 0}

    def stopped_by_the_scheduler(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            workers = multiprocessing.active_children()
            assert workers, "the run was meant to have a data worker"
            # from another process, as a scheduler's: a worker quietly exits when its own trainer sends it
            subprocess.run(["kill", "-TERM", *(str(w.pid) for w in workers)], check=True)
            time.sleep(1.0)  # a dead worker would be noticed here (SIGCHLD)
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, model, batch)

    monkeypatch.setattr(pretrain_mod.PretrainTask, "train_step", stopped_by_the_scheduler)
    run = pretrain(_cfg(data, tmp_path / "run", max_updates=6, num_workers=1))
    assert os.readlink(run / "checkpoints" / "last") == "update_0000003"


def test_cli_exit_status_says_whether_the_run_finished(data, tmp_path, monkeypatch, capsys):
    """Stopped early (it saved and can resume): 130, so that `xlsr pretrain ... && next` does not go on."""
    cfg_yaml = tmp_path / "run.yaml"
    cfg_yaml.write_text(yaml.safe_dump({"model": TINY_MODEL, "max_tokens": 64000, "min_sample_size": 8000,
                                        "max_sample_size": 16000, "num_workers": 0, "progress": False,
                                        "tensorboard": False, "device": "cpu", "valid_every": 0}))
    args = ["--config", cfg_yaml, "--max-updates", 3, "--data", data, "--out", tmp_path / "run"]
    step = pretrain_mod.PretrainTask.train_step

    def interrupted(self, model, batch):
        os.kill(os.getpid(), signal.SIGINT)
        return step(self, model, batch)

    monkeypatch.setattr(pretrain_mod.PretrainTask, "train_step", interrupted)
    assert _cli(*args) == 130
    monkeypatch.undo()
    assert _cli(*args) == 0  # resumed to the end


def test_chance_level_counts_the_cross_sample_distractors(data, tmp_path):
    """A masked frame's logits hold 1 + K + K_cross candidates: with K = 0 and 20 cross-sample distractors chance is
    log2(21) bits, not log2(1) = 0 (which warned on every run past `stuck_after`)."""
    task = PretrainTask(_cfg(data, tmp_path / "run", max_updates=3000,
                             model={**TINY_MODEL, "num_negatives": 0, "cross_sample_negatives": 20}))
    kinds = lambda loss: [k for k, _ in task.health_warnings({"contrastive_loss": loss}, update=2000)]  # noqa: E731
    assert kinds(2.2) == []  # half of log2(21): learning, not at chance
    assert kinds(4.39) == ["stuck_at_chance"]
