"""Which data a demo run trains, selects and is scored on: trained on the target's train split, its checkpoint chosen
by dev PER, that best checkpoint (not the last) scored on the test split and on the held-out set, and the best dev
PER as the lowest validation of the run."""

import json
from pathlib import Path

import pytest

from xlsr.demo import DemoSettings
from xlsr.demo import finetuning as demo_ft


@pytest.fixture
def fake_runs(monkeypatch):
    """`finetune` and `evaluate_pooled` stand-ins: a run writes a best and a last checkpoint and three validations;
    scoring returns a PER that says which checkpoint and which manifests it was given."""
    configs, scored = [], []

    def fake_finetune(cfg, feature_caches=None):
        configs.append(cfg)
        run = Path(cfg.out)
        for name in ("best", "last"):
            (run / "checkpoints" / name).mkdir(parents=True, exist_ok=True)
            (run / "checkpoints" / name / "config.json").write_text("{}")
        lines = [{"split": "valid", "update": 1, "per": 0.61}, {"split": "train", "update": 2, "loss": 1.0},
                 {"split": "valid", "update": 2, "per": 0.55}, {"split": "valid", "update": 3, "per": 0.58}]
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        return run

    def fake_evaluate(model_dir, manifests, device="cpu", cache=None):
        scored.append((Path(model_dir).name, [Path(m) for m in manifests]))
        per = {"test.jsonl": 0.3, "dev.jsonl": 0.9}.get(Path(manifests[0]).name, 0.2) if len(manifests) == 1 else 0.25
        return {"per": per if Path(model_dir).name == "best" else 1.0, "counts": {"ref_len": len(manifests)}}

    monkeypatch.setattr(demo_ft, "finetune", fake_finetune)
    monkeypatch.setattr(demo_ft, "evaluate_pooled", fake_evaluate)
    monkeypatch.setattr(demo_ft, "run_finished", lambda run_dir, max_updates: True)
    return configs, scored


def test_a_run_trains_on_train_selects_on_dev_and_scores_its_best_checkpoint_on_test(tmp_path, fake_runs):
    configs, scored = fake_runs
    settings = DemoSettings.quick()
    corpus, held_out = tmp_path / "corpus", [tmp_path / "eval" / f"{s}.jsonl" for s in ("train", "dev", "test")]
    result = demo_ft.finetune_one("multilingual", "rel/multi", 1, settings, corpus, tmp_path / "run", {}, held_out)

    target = corpus / settings.target
    assert configs[0].train == [str(target / "train.jsonl")] and configs[0].dev == [str(target / "dev.jsonl")]
    assert configs[0].seed == 1 and configs[0].init == "rel/multi"
    assert scored == [("best", [target / "test.jsonl"]), ("best", held_out)]
    assert (result.test_per, result.eval_per, result.dev_per) == (0.3, 0.25, 0.55)
    assert result.counts == {"ref_len": 1} and result.eval_counts == {"ref_len": 3}


def test_the_held_out_set_is_every_split_of_its_own_seeds_corpus(tmp_path, monkeypatch):
    from xlsr.demo import stages

    calls = []
    monkeypatch.setattr(stages, "synthesize_corpus", lambda out, langs, n, seed, **kw: calls.append((langs, n, seed)))
    settings = DemoSettings.quick()
    manifests = stages.synthesize_eval(settings, tmp_path / "eval", show_progress=False)
    assert calls == [([settings.target], settings.eval_utts, settings.eval_seed)]
    assert settings.eval_seed not in (settings.seed, 1)  # neither the demo corpus's nor the releases'
    assert manifests == [tmp_path / "eval" / settings.target / f"{s}.jsonl" for s in ("train", "dev", "test")]
