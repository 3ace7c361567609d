"""benchmarks/pretrain_recipe.py's report (wall minutes, the targets and their boundaries, the transfer verdict, the
layer-wise probe's ratios, the checkpoints it keeps) and benchmarks/finetune_trial.py's per-model rates and PER
table, from logs and runs of known values."""

import argparse
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from _benchmark_scripts import load_benchmark

NAN = float("nan")


@pytest.fixture(scope="module")
def recipe():
    return load_benchmark("pretrain_recipe")


HEALTHY = {"feature_eff_dim": 10.0, "context_eff_dim": 10.0, "feature_eff_dim_init": 20.0,
           "context_eff_dim_init": 20.0, "input_eff_dim": 30.0}


def valid(update, time, accuracy, ppl=9.0, probe=(NAN, NAN), **health):
    return {"split": "valid", "update": update, "time": time, "accuracy": accuracy, "contrastive_loss": 1.0,
            "code_perplexity": ppl, "neg_is_pos": 0.0, "probe_feature_per": probe[0], "probe_context_per": probe[1],
            **HEALTHY, **health}


def write_run(run: Path, records: list[dict], config_mtime: float = 1e4) -> Path:
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"preset": "tiny", "model": {
        "num_codevector_groups": 2, "num_codevectors_per_group": 16, "num_negatives": 20}}))
    os.utime(run / "config.yaml", (config_mtime, config_mtime))  # rewritten on resume: later than the start
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def train(update, time, **fields):
    return {"split": "train", "update": update, "time": time, "seconds_per_update": 10.0, "accuracy": 0.2, **fields}


def test_curve_rows_take_the_train_state_before_each_validation_and_minutes_from_the_runs_start(recipe, tmp_path):
    run = write_run(tmp_path / "run", [train(1, 1000.0), valid(0, 1000.0, 0.05),
                                       train(2, 1010.0, nan_skipped=2, accuracy=0.4), valid(2, 1590.0, 0.3)])
    rows, info = recipe.curve(run)
    assert info == {"gv": 32, "num_negatives": 20}
    # the first update logged at 1000 s took 10 s: the run started at 990 s (config.yaml is dated later)
    assert [r["minutes"] for r in rows] == pytest.approx([10 / 60, 10.0])
    assert [r["train_accuracy"] for r in rows] == [0.2, 0.4]
    assert [r["nan_skipped"] for r in rows] == [0, 2]


def report(recipe, tmp_path, capsys, records):
    ok = recipe.report(write_run(tmp_path / "run", records))
    return ok, capsys.readouterr().out


def probed_run(end_probe, **end_health):
    return [train(1, 1000.0), valid(0, 1000.0, 0.05, probe=(0.8, 0.8)), valid(100, 1300.0, 0.35),
            valid(200, 1600.0, 0.30, ppl=9.0, probe=end_probe, **end_health)]


def test_targets_are_met_at_their_boundaries_and_the_first_update_at_target_is_named(recipe, tmp_path, capsys):
    ok, out = report(recipe, tmp_path, capsys, probed_run((0.64, 0.5)))
    assert "G·V = 32, K = 20" in out
    assert re.search(r"^\s+200\s+10\.2\s.*\s9\.0\s+28%", out, re.M), out  # 9 of G·V = 32 codes
    assert "): met at update 200 after 10.2 min; accuracy first at target at update 100 after 5.2 min" in out
    assert "transfer (" in out and "): met — probe PER 80.0% → 64.0% (CNN), 80.0% → 50.0%" in out
    assert ok


def test_a_code_perplexity_under_a_quarter_of_g_times_v_misses_the_target(recipe, tmp_path, capsys):
    records = probed_run((0.5, 0.5))
    records[-1]["code_perplexity"] = 7.9  # 8 is a quarter of 2 x 16
    ok, out = report(recipe, tmp_path, capsys, records)
    assert "): NOT met at update 200" in out and not ok


@pytest.mark.parametrize("end_probe", [(0.5, 0.7), (0.7, 0.5)])
def test_transfer_needs_both_probes_at_most_0_8_of_their_start(recipe, tmp_path, capsys, end_probe):
    ok, out = report(recipe, tmp_path, capsys, probed_run(end_probe))
    assert "): met at update 200" in out  # the accuracy target alone is met
    assert "): NOT met — probe PER" in out and not ok


@pytest.mark.parametrize("collapsed", ["feature_eff_dim", "context_eff_dim"])
def test_transfer_needs_both_effective_dimensions_above_a_quarter_of_their_start(recipe, tmp_path, capsys, collapsed):
    ok, out = report(recipe, tmp_path, capsys, probed_run((0.5, 0.5), **{collapsed: 4.9}))
    assert "): NOT met — probe PER" in out and not ok


def test_transfer_is_not_measured_without_a_probe_at_update_0(recipe, tmp_path, capsys):
    records = probed_run((0.5, 0.5))
    records[1]["probe_feature_per"] = records[1]["probe_context_per"] = NAN
    records[2].update(probe_feature_per=0.8, probe_context_per=0.8)
    ok, out = report(recipe, tmp_path, capsys, records)
    assert "transfer: not measured" in out and not ok


def test_layerwise_report_prints_each_models_best_layer_over_random_weights(recipe, tmp_path, capsys):
    (tmp_path / "run_it").mkdir()
    (tmp_path / "run_it" / "probe.json").write_text(json.dumps({"models": [
        {"model": "random", "layers": [{"layer": 0, "per": 0.8}, {"layer": 1, "per": 0.6}]},
        {"model": "ckpt", "layers": [{"layer": 0, "per": 0.5}, {"layer": 1, "per": 0.3}, {"layer": 2, "per": 0.45}]}]}))
    recipe.layerwise_report(tmp_path)
    out = capsys.readouterr().out
    assert re.search(r"^\s+random\s+layer\s+1\s+60\.0%\s+1\.00x$", out, re.M), out
    assert re.search(r"^\s+ckpt\s+layer\s+1\s+30\.0%\s+0\.50x$", out, re.M), out


def test_the_run_keeps_every_checkpoint_the_layerwise_probe_reads(recipe, tmp_path, monkeypatch):
    from xlsr.released import build

    calls = []

    class Stop(Exception):
        pass

    def run_xlsr(args):
        calls.append(args)
        if args[0] == "pretrain":
            raise Stop

    monkeypatch.setattr(recipe, "xlsr", run_xlsr)
    monkeypatch.setattr(build, "corpus_matches", lambda corpus, r: True)
    monkeypatch.setattr(sys, "argv", ["pretrain_recipe.py", "--work", str(tmp_path), "--probe-updates", "400,1600",
                                      "--set", "save_every=400"])
    with pytest.raises(Stop):
        recipe.main()
    args = calls[-1]
    keep = int(args[args.index("--keep-last") + 1])
    saves = list(range(400, 1601, 400))
    assert {400, 1600} <= set(saves[-keep:])


# ---------------------------------------------------------------------------------------- finetune_trial.py
@pytest.fixture(scope="module")
def trial():
    return load_benchmark("finetune_trial")


def test_a_model_names_its_checkpoint_and_optionally_its_own_peak_rate(trial):
    assert trial.named("a=/runs/r@2/ckpt@2e-3") == ("a", Path("/runs/r@2/ckpt"), 2e-3)
    assert trial.named("b=/runs/ckpt") == ("b", Path("/runs/ckpt"), None)
    for bad in ("/ckpt", "=/ckpt", "a="):
        with pytest.raises(argparse.ArgumentTypeError):
            trial.named(bad)


@pytest.mark.parametrize("spec", ["/runs/run@2", "/runs/run@2/ckpt", "/ckpt@0", "/ckpt@1", "/ckpt@x", "/ckpt@nan",
                                  "@1e-3"])
def test_an_at_not_followed_by_a_peak_rate_is_part_of_the_path(trial, spec):
    # a folder named run@2 was split into run and a rate of 2 (refused), run@2/ckpt into run and "2/ckpt"
    assert trial.named(f"a={spec}") == ("a", Path(spec), None)


def test_an_existing_path_ending_in_a_rate_is_that_path(trial, tmp_path):
    (tmp_path / "lr@0.5").mkdir()
    assert trial.named(f"a={tmp_path}/lr@0.5") == ("a", tmp_path / "lr@0.5", None)
    assert trial.named(f"a={tmp_path}/lr@0.5@1e-3") == ("a", tmp_path / "lr@0.5", 1e-3)
    assert trial.named(f"a={tmp_path}/lr@0.25") == ("a", tmp_path / "lr", 0.25)  # no such path: a rate


def test_a_missing_checkpoint_with_an_at_says_how_a_rate_is_read(trial, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["finetune_trial.py", "--out", str(tmp_path), "--model", f"a={tmp_path}/ckpt@2"])
    with pytest.raises(SystemExit) as e:
        trial.main()
    assert str(e.value) == (f"error: --model: no checkpoint at {tmp_path}/ckpt@2 (a rate after the last @ is a number "
                            f"between 0 and 1)")


def test_each_model_runs_at_its_own_rate_and_the_table_pools_its_seeds(trial, tmp_path, monkeypatch, capsys):
    from xlsr.demo.finetuning import FinetuneResult
    from xlsr.demo.settings import DemoSettings

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    manifest = tmp_path / "eval.jsonl"
    manifest.write_text("")
    target = DemoSettings().target
    (tmp_path / "out" / "corpus" / target).mkdir(parents=True)
    (tmp_path / "out" / "corpus" / target / "test.jsonl").write_text("")
    seen = {}

    def finetune_inits(settings, inits, corpus, out, eval_manifests, on_run):
        seen.update(rates=dict(settings.finetune_lr), inits=inits, eval=eval_manifests, seeds=settings.finetune_seeds)
        results = [FinetuneResult(name, str(inits[name]), seed, "run", test, dev, {}, 60.0, eval_per=held)
                   for name, seed, dev, test, held in (("a", 1, 0.1, 0.3, 0.25), ("a", 2, 0.2, 0.5, 0.35),
                                                       ("b", 1, 0.4, 0.6, 0.5), ("b", 2, 0.4, 0.6, 0.7))]
        for r in results:
            on_run(r)
        return results

    monkeypatch.setattr(trial, "finetune_inits", finetune_inits)
    monkeypatch.setattr(sys, "argv", ["finetune_trial.py", "--out", str(tmp_path / "out"), "--model",
                                      f"a={tmp_path / 'a'}@2e-3", "--model", f"b={tmp_path / 'b'}", "--lr", "1e-3",
                                      "--seeds", "1,2", "--eval", str(manifest)])
    trial.main()
    out = capsys.readouterr().out
    assert seen["rates"] == {"a": 2e-3, "b": 1e-3} and seen["seeds"] == (1, 2) and seen["eval"] == [manifest]
    assert "a seed 2: best dev PER 20.0%, test PER 50.0%, held-out PER 35.0% (60 s)" in out
    assert re.search(r"^a\s+15\.0% ± 7\.1\s+40\.0% ± 14\.1\s+30\.0% ± 7\.1\s+25\.0, 35\.0$", out, re.M), out
    assert re.search(r"^b\s+40\.0% ± 0\.0\s+60\.0% ± 0\.0\s+60\.0% ± 14\.1\s+50\.0, 70\.0$", out, re.M), out
