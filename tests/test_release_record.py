"""What a release build records in recipe.json and ships, from stand-in `xlsr` commands: the training seed, the
corpus's hours (the train split's apart), and the run's last checkpoint (not its best by validation)."""

import json
from dataclasses import replace

import yaml
from _release_fakes import fake_command, fake_synth

from xlsr.released import RELEASES, TARGET

MULTI = "tiny-multilingual"
SECONDS = {"train": 720.0, "dev": 90.0, "test": 90.0}  # per language, as synth.json's summary records them


def _fake_xlsr(args, log_file=None, threads=None):
    """`run_xlsr` stand-in: each command writes what the build reads next; the run's best and last checkpoints
    differ, as after a validation that picked an earlier update."""
    out, value = fake_command(args)
    if args[0] == "synth":
        fake_synth(out, value, SECONDS)
    elif args[0] == "pretrain":
        updates = int(value["--max-updates"])
        for name in ("last", "best"):
            (out / "checkpoints" / name).mkdir(parents=True, exist_ok=True)
            (out / "checkpoints" / name / "config.json").write_text(json.dumps({"which": name}))
            (out / "checkpoints" / name / "model.safetensors").write_bytes(f"weights of {name}".encode())
        (out / "config.yaml").write_text(yaml.safe_dump({"max_updates": updates, "seed": int(value["--seed"]),
                                                         "alpha": float(value["--alpha"])}))
        (out / "log.jsonl").write_text(json.dumps({"split": "train", "update": updates, "loss": 3.5}) + "\n")
    elif args[0] == "plot":
        (out / "curves.png").write_bytes(b"png")
    return 1.0


def test_the_release_records_its_seeds_and_hours_and_ships_the_last_checkpoint(tmp_path, monkeypatch):
    import xlsr.released.build as build

    monkeypatch.setattr(build, "run_xlsr", _fake_xlsr)
    recipe = replace(RELEASES[MULTI].quick(), seed=7)  # the training seed, not the corpus's (synth_seed 1)
    folder = build.build_release(recipe, tmp_path / "dest", tmp_path / "work")
    record = json.loads((folder / "recipe.json").read_text())

    assert record["seed"] == 7 and record["corpus"]["seed"] == recipe.synth_seed == 1
    assert record["pretrain"]["seed"] == 7 and record["final"]["train"]["update"] == recipe.max_updates
    langs = list(recipe.langs)
    assert record["corpus"]["langs"] == langs and TARGET not in langs
    assert record["corpus"]["hours"] == {lang: round(900.0 / 3600, 4) for lang in langs}
    assert record["corpus"]["train_hours"] == round(len(langs) * 720.0 / 3600, 4)  # the train split alone
    assert (folder / "model.safetensors").read_bytes() == b"weights of last"
    assert json.loads((folder / "config.json").read_text()) == {"which": "last"}
    assert "0.40 h in the train split" in (folder / "RECIPE.md").read_text()
