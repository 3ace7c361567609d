"""What a release build ships: the last checkpoint of its run, and a recipe.json that states the run's seed and
the pretraining audio (train split only); rebuilding replaces the earlier release."""

import json
from dataclasses import replace

import yaml
from _release_fakes import fake_command, fake_synth

from xlsr.released import RELEASES, TARGET

MONO = f"tiny-monolingual-{TARGET}"


def _fake_xlsr(args, log_file=None, threads=None):
    """`run_xlsr` stand-in: each command writes what the build reads next (a best checkpoint beside the last)."""
    out, value = fake_command(args)
    if args[0] == "synth":
        fake_synth(out, value, {"train": 720.0, "dev": 360.0, "test": 360.0})
    elif args[0] == "pretrain":
        updates = int(value["--max-updates"])
        for which in ("last", "best"):
            (out / "checkpoints" / which).mkdir(parents=True, exist_ok=True)
            for name in ("config.json", "model.safetensors"):
                (out / "checkpoints" / which / name).write_text(json.dumps({"checkpoint": which}))
        (out / "config.yaml").write_text(yaml.safe_dump({"max_updates": updates}))
        (out / "log.jsonl").write_text(json.dumps({"split": "train", "update": updates}) + "\n")
    elif args[0] == "plot":
        (out / "curves.png").write_bytes(b"png")
    return 0.0


def test_the_release_is_the_last_checkpoint_with_the_run_seed_and_train_hours(tmp_path, monkeypatch):
    import xlsr.released.build as build

    monkeypatch.setattr(build, "run_xlsr", _fake_xlsr)
    recipe = replace(RELEASES[MONO].quick(), seed=7)  # a pretraining seed apart from the corpus's
    assert recipe.synth_seed != 7
    dest = build.build_release(recipe, tmp_path / "dest", tmp_path / "work")
    for name in ("config.json", "model.safetensors"):
        assert json.loads((dest / name).read_text()) == {"checkpoint": "last"}
    record = json.loads((dest / "recipe.json").read_text())
    assert record["seed"] == recipe.seed and record["corpus"]["seed"] == recipe.synth_seed
    assert record["corpus"]["train_hours"] == 0.2  # 720 s of train audio; dev and test are not pretrained on
    assert record["corpus"]["hours"] == {TARGET: 0.4}

    (dest / "stale.txt").write_text("from the earlier build")
    again = build.build_release(recipe, tmp_path / "dest", tmp_path / "work")
    assert again == dest and not (dest / "stale.txt").exists()
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == [MONO]  # no <name>.old left behind


def test_machine_settings_pass_on_zero_workers_and_leave_out_what_was_not_given():
    from xlsr.released.build import machine_settings

    assert machine_settings(None, None, None) == {}
    assert machine_settings(None, None, 0) == {"num_workers": "0"}  # 0 (load in the main process) is a choice too
    assert machine_settings("cpu", "bf16", 3, ["a.jsonl", "b.jsonl"]) == {
        "probe_every": "100", "probe_data": "a.jsonl,b.jsonl", "device": "cpu", "precision": "bf16", "num_workers": "3"}


def test_the_recipe_fingerprint_ignores_machine_settings_but_not_training_ones():
    from xlsr.released.build import recipe_fingerprint
    from xlsr.released.verify import MACHINE_KEYS

    quick = RELEASES[MONO].quick()
    base = recipe_fingerprint(quick)
    assert not set(base["pretrain"]) & set(MACHINE_KEYS)
    machine = replace(quick, settings=quick.settings + (("num_workers", "3"), ("tensorboard", "true")))
    assert recipe_fingerprint(machine)["sha256"] == base["sha256"]  # a rebuild resumes, not starts over
    assert recipe_fingerprint(replace(quick, settings=quick.settings + (("max_tokens", "80000"),)))["sha256"] != \
        base["sha256"]
