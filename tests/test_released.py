"""The released checkpoints: they load, what they record matches their recipe, and the build makes that layout."""

import json

import pytest
import torch
from _release_fakes import fake_command, fake_synth

import xlsr
from xlsr.data.synth.languages import LANGUAGES
from xlsr.errors import CheckpointError
from xlsr.released import MULTILINGUAL_LANGS, RELEASES, TARGET, missing_files, released_path, require_released
from xlsr.released.recipes import FILES

MULTI, MONO = "tiny-multilingual", f"tiny-monolingual-{TARGET}"


def shipped(name):
    folder = released_path(name)
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder}/model.safetensors not produced yet (scripts/release_checkpoints.sh)")
    return folder


@pytest.mark.parametrize("name", list(RELEASES))
def test_shipped_checkpoint_loads_and_quantizes(name):
    folder = shipped(name)
    assert missing_files(name) == []
    loaded = xlsr.load_pretrained(folder)
    assert type(loaded.model).__name__ == "Wav2Vec2ForPreTraining"
    model = loaded.model.eval()
    x = torch.randn(1, 16000)
    codes, frames = model.quantize(x, torch.tensor([16000]))
    G, V = loaded.config.num_codevector_groups, loaded.config.num_codevectors_per_group
    assert codes.shape[-1] == G and int(codes.min()) >= 0 and int(codes.max()) < V


@pytest.mark.parametrize("name", list(RELEASES))
def test_shipped_checkpoint_matches_its_recipe(name):
    from xlsr.released.verify import verify_release

    folder = shipped(name)
    assert verify_release(folder, RELEASES[name]) == []
    record = json.loads((folder / "recipe.json").read_text())
    assert record["final"].get("train", {}).get("update") == record["pretrain"]["max_updates"]  # trained to the end
    text = (folder / "RECIPE.md").read_text()
    assert f"xlsr pretrain --recipe {RELEASES[name].recipe}" in text
    accumulated = record["pretrain"].get("update_freq", 1)  # the batch of an update is stated whole
    assert (f"updates of {accumulated} batches of at most" in text) == (accumulated > 1)


def test_recipes_compare_like_the_paper():
    multi, mono = RELEASES[MULTI], RELEASES[MONO]
    assert TARGET not in multi.langs and mono.langs == (TARGET,)
    assert multi.langs == MULTILINGUAL_LANGS and len(multi.langs) + 1 >= 10
    families = {LANGUAGES[lang].family for lang in multi.langs}
    assert LANGUAGES[TARGET].family in families and len(families) >= 4  # relatives and distant languages
    # same updates, batch, seed and recipe: only the audio differs — which languages, and how much (the target is
    # low-resource: it has little unlabeled audio, so the monolingual model sees far less than the multilingual one)
    for field in ("synth_seed", "recipe", "seed", "alpha", "max_updates", "settings"):
        assert getattr(multi, field) == getattr(mono, field), field
    assert mono.utts_per_lang * 10 <= multi.utts_per_lang * len(multi.langs)


@pytest.mark.parametrize("name", list(RELEASES))
def test_recorded_command_resolves_to_the_recipe(name, tmp_path):
    """What `xlsr pretrain <args>` resolves (the CLI's own parser and config system) is what verify expects."""
    pytest.importorskip("xlsr.train.pretrain")
    from xlsr.cli.main import build_parser
    from xlsr.config import collect_overrides, config_to_dict, load_config
    from xlsr.released.verify import MACHINE_KEYS, expected_pretrain_config
    from xlsr.train.pretrain import PretrainConfig
    from xlsr.train.recipes import recipe_path

    recipe = RELEASES[name]
    try:
        recipe_path(recipe.recipe)
    except xlsr.XlsrError:
        pytest.skip(f"pretraining recipe {recipe.recipe} not shipped yet")
    args = build_parser().parse_args(recipe.pretrain_args(tmp_path / "corpus", tmp_path / "run", {"device": "cpu"}))
    overrides = collect_overrides(args)
    overrides["recipe"] = args.recipe
    resolved = config_to_dict(load_config(PretrainConfig, [recipe_path(args.recipe)], overrides))
    wanted = expected_pretrain_config(recipe)
    assert {k: v for k, v in resolved.items() if k not in MACHINE_KEYS} == \
        {k: v for k, v in wanted.items() if k not in MACHINE_KEYS}
    assert resolved["langs"] == list(recipe.langs) and resolved["seed"] == recipe.seed
    assert resolved["device"] == "cpu" and resolved["data"] == str(tmp_path / "corpus")


def test_missing_release_is_one_line(tmp_path):
    with pytest.raises(CheckpointError) as err:
        require_released([MULTI], tmp_path)
    assert "\n" not in str(err.value) and "xlsr demo --full" in str(err.value)
    with pytest.raises(CheckpointError, match="no such released checkpoint"):
        released_path("tiny-klingon")


@pytest.mark.slow
def test_quick_build_makes_the_release_layout(tmp_path):
    """`recreate_released(quick=True)`: synth → pretrain → plot in child processes, then the release folder."""
    from xlsr.released.build import recreate_released
    from xlsr.released.verify import verify_release

    try:
        from xlsr.train.recipes import recipe_path

        recipe_path(RELEASES[MONO].recipe)
    except (ImportError, xlsr.XlsrError):
        pytest.skip("pretraining recipe not shipped yet")
    # both at once, as `xlsr demo --full` does (the cores are split between the two child runs)
    built = recreate_released(tmp_path / "dest", tmp_path / "work", names=[MULTI, MONO], quick=True,
                              machine={"device": "cpu"}, parallel=True)
    assert sorted(p.name for p in built[MULTI].iterdir()) == sorted(FILES)
    assert (tmp_path / "work" / MULTI / "build.log").is_file()
    folder = built[MONO]
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    recipe = RELEASES[MONO].quick()
    assert verify_release(folder, recipe) == []
    record = json.loads((folder / "recipe.json").read_text())
    assert record["commands"][0].startswith("xlsr synth ") and record["commands"][1].startswith("xlsr pretrain ")
    assert record["final"]["train"]["update"] == recipe.max_updates
    assert record["pretrain"]["device"] == "cpu" and record["compute"]["device"] == "cpu"
    # the release checkpoint is byte for byte the run's last checkpoint
    last = (tmp_path / "work" / MONO / "run" / "checkpoints" / "last").resolve()
    assert (folder / "model.safetensors").read_bytes() == (last / "model.safetensors").read_bytes()

    # a record that disagrees with the recipe is caught, naming the field
    record["pretrain"]["alpha"] = 1.0
    record["corpus"]["seed"] = 99
    (folder / "recipe.json").write_text(json.dumps(record))
    problems = verify_release(folder, recipe)
    assert any("pretrain.alpha" in p for p in problems) and any("corpus.seed" in p for p in problems)


def test_release_corpus_is_the_realistic_one_written_out(tmp_path):
    """The releases are built on `xlsr synth`'s realistic corpus, its options written out in the command (so a change
    of the synth defaults cannot silently change a rebuild); a corpus with other effects or the clean one is redone."""
    from xlsr.cli.main import build_parser
    from xlsr.cli.synth import corpus_options
    from xlsr.data.augment import DEFAULT_AUGMENT
    from xlsr.released.build import corpus_matches
    from xlsr.released.recipes import LOW_RESOURCE_UTTS, RELEASE_SYNTH

    recipe = RELEASES[MULTI]
    args = build_parser().parse_args(recipe.synth_args(tmp_path, workers=2))
    assert "--augment" in recipe.synth_args(tmp_path) and "--voices" in recipe.synth_args(tmp_path)
    assert corpus_options(args) == RELEASE_SYNTH == {"augment": DEFAULT_AUGMENT, "voices": "varied",
                                                     "speakers_per_lang": 40}
    # synth.json records the effects in canonical order with their ranges: still the same corpus
    record = {"seed": recipe.synth_seed, "utts_per_lang": recipe.utts_per_lang, "speakers_per_lang": 40,
              "languages": {lang: {} for lang in recipe.langs}, "voices": "varied",
              "augment": "speed=0.3:0.9-1.1,reverb=0.3:0.2-0.8,noise=0.5:5-30,bandlimit=0.2:3000-6000"}
    (tmp_path / "synth.json").write_text(json.dumps(record))
    for lang in recipe.langs:
        (tmp_path / lang).mkdir()
        for split in ("train", "dev", "test"):
            (tmp_path / lang / f"{split}.jsonl").write_text("")
    assert corpus_matches(tmp_path, recipe)
    (tmp_path / "synth.json").write_text(json.dumps({**record, "augment": "noise=0.5:5-30"}))
    assert not corpus_matches(tmp_path, recipe)
    clean = {k: v for k, v in record.items() if k not in ("augment", "voices")}  # as written before they existed
    (tmp_path / "synth.json").write_text(json.dumps({**clean, "speakers_per_lang": 10}))
    assert not corpus_matches(tmp_path, recipe)
    # the monolingual release has the low-resource target's little audio; the multilingual one far more
    mono = RELEASES[MONO]
    assert mono.utts_per_lang == LOW_RESOURCE_UTTS < recipe.utts_per_lang


def test_a_build_whose_pretraining_was_stopped_early_makes_no_release(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM makes `xlsr pretrain` save and exit cleanly: the build must not ship that checkpoint."""
    import xlsr.released.build as build
    from xlsr.errors import XlsrError

    def fake_xlsr(args, log_file=None, threads=None):  # pretraining that stopped at update 118 of 1600
        if args[0] == "pretrain":
            run = tmp_path / "work" / MONO / "run"
            run.mkdir(parents=True)
            (run / "config.yaml").write_text("max_updates: 1600\n")
            (run / "log.jsonl").write_text(json.dumps({"split": "train", "update": 118, "loss": 3.0}) + "\n")
        return 0.0

    monkeypatch.setattr(build, "run_xlsr", fake_xlsr)
    with pytest.raises(XlsrError, match="stopped at update 118 of 1600"):
        build.build_release(RELEASES[MONO], tmp_path / "dest", tmp_path / "work")
    assert not (tmp_path / "dest" / MONO).exists()


def _fake_build_commands(calls):
    """`run_xlsr` stand-in: each command writes what the build reads next; `calls` gets (command, run/ existed)."""

    import yaml

    def fake_xlsr(args, log_file=None, threads=None):
        out, value = fake_command(args)
        if args[0] == "synth":
            calls.append(("synth", None))
            fake_synth(out, value, {"train": 60.0})
        elif args[0] == "pretrain":
            calls.append(("pretrain", out.exists()))  # an existing run/ is resumed by `xlsr pretrain`
            updates = int(value["--max-updates"])
            (out / "checkpoints" / "last").mkdir(parents=True, exist_ok=True)
            for name in ("config.json", "model.safetensors"):
                (out / "checkpoints" / "last" / name).write_text("{}")
            (out / "config.yaml").write_text(yaml.safe_dump({"max_updates": updates, "alpha": float(value["--alpha"])}))
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps({"split": "train", "update": updates}) + "\n")
        elif args[0] == "plot":
            calls.append(("plot", None))
            (out / "curves.png").write_bytes(b"png")
        return 0.0

    return fake_xlsr


def test_a_rebuild_with_another_recipe_or_corpus_starts_over(tmp_path, monkeypatch):
    """WORK/<name> keeps corpus/ and run/ only for the recipe they were made for: a changed corpus or pretraining
    configuration clears them (the old run must not be resumed); the same recipe again resumes and keeps the corpus."""
    from dataclasses import replace

    import xlsr.released.build as build

    calls = []
    monkeypatch.setattr(build, "run_xlsr", _fake_build_commands(calls))
    work, dest = tmp_path / "work", tmp_path / "dest"
    first = RELEASES[MULTI].quick()  # es, pt: 6 utterances, 2 updates
    build.build_release(first, dest, work)
    assert calls == [("synth", None), ("pretrain", False), ("plot", None)]

    other = replace(first, langs=MULTILINGUAL_LANGS[:3], utts_per_lang=8, max_updates=4)
    calls.clear()
    build.build_release(other, dest, work)
    assert calls == [("synth", None), ("pretrain", False), ("plot", None)]  # not resumed from update 2
    run = work / MULTI / "run"
    assert [json.loads(line)["update"] for line in (run / "log.jsonl").read_text().splitlines()] == [4]
    recorded = json.loads((work / MULTI / build.FINGERPRINT).read_text())
    assert recorded["corpus"]["langs"] == list(MULTILINGUAL_LANGS[:3]) and recorded["pretrain"]["max_updates"] == 4

    calls.clear()
    build.build_release(other, dest, work)  # the same recipe again: the corpus kept, the run resumed
    assert calls == [("pretrain", True), ("plot", None)]

    calls.clear()
    build.build_release(replace(other, alpha=1.0), dest, work)  # only the pretraining configuration differs
    assert calls == [("synth", None), ("pretrain", False), ("plot", None)]

    # a work folder from before the fingerprint (none recorded) is not trusted either
    (work / MULTI / build.FINGERPRINT).unlink()
    calls.clear()
    build.build_release(replace(other, alpha=1.0), dest, work)
    assert calls == [("synth", None), ("pretrain", False), ("plot", None)]


@pytest.mark.slow
def test_a_real_rebuild_with_another_recipe_trains_from_update_0(tmp_path):
    """The reviewer's case with the real commands: quick es,pt (6 utterances, 2 updates), then three languages,
    8 utterances, 4 updates into the same work folder: the second run is a fresh one (its log holds update 4 only,
    not 2 and 4) on the new corpus."""
    from dataclasses import replace

    from xlsr.released.build import build_release
    from xlsr.released.verify import verify_release
    from xlsr.train.monitor import read_log

    first = RELEASES[MULTI].quick()
    build_release(first, tmp_path / "dest", tmp_path / "work", machine={"device": "cpu"})
    other = replace(first, langs=MULTILINGUAL_LANGS[:3], utts_per_lang=8, max_updates=4)
    folder = build_release(other, tmp_path / "dest", tmp_path / "work", machine={"device": "cpu"})
    run = tmp_path / "work" / MULTI / "run"
    assert [r["update"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"] == [4]
    assert json.loads((folder / "recipe.json").read_text())["corpus"]["langs"] == list(MULTILINGUAL_LANGS[:3])
    assert verify_release(folder, other) == []


def test_verify_catches_an_unfinished_run_wrong_metadata_and_corpus_options(tmp_path):
    """What verify_release says it checks beyond the recorded fields: the run trained to max_updates, config.json's
    metadata is the recipe's, and the corpus options (in recipe.json's corpus, and in the recorded synth command)."""
    import shutil

    from xlsr.released.verify import verify_release

    folder = tmp_path / MONO
    shutil.copytree(shipped(MONO), folder)
    recipe = RELEASES[MONO]
    assert verify_release(folder, recipe) == []
    record = json.loads((folder / "recipe.json").read_text())
    record["final"]["train"]["update"] = 118  # stopped by Ctrl-C at update 118 of 1600
    record["commands"][0] = record["commands"][0].replace("--voices varied", "--voices basic")
    record["corpus"]["speakers_per_lang"] = 10  # recorded (as builds now do): compared
    (folder / "recipe.json").write_text(json.dumps(record))
    config = json.loads((folder / "config.json").read_text())
    config["metadata"]["alpha"] = 1.0
    (folder / "config.json").write_text(json.dumps(config))
    problems = verify_release(folder, recipe)
    assert any("final.train.update is 118" in p and "did not finish" in p for p in problems)
    assert any("metadata.alpha is 1.0" in p for p in problems)
    assert any("(xlsr synth) --voices is 'basic'" in p for p in problems)
    assert any("corpus.speakers_per_lang is 10" in p for p in problems)
    assert len(problems) == 4, problems


def test_verify_reports_a_damaged_or_outdated_record_in_a_line(tmp_path):
    """A recipe.json that is not JSON, a final block without its train record, a recorded pretraining setting today's
    code does not know: each one line among the problems, not an exception."""
    import shutil

    from xlsr.released.verify import verify_release

    recipe = RELEASES[MONO]
    folders = {}
    for case in ("not_json", "no_train", "unknown_key", "no_commands"):
        folders[case] = tmp_path / case / MONO
        shutil.copytree(shipped(MONO), folders[case])
    (folders["not_json"] / "recipe.json").write_text("{ not json")
    for case, change in (("no_train", lambda r: r["final"].update(train=None)),
                         ("unknown_key", lambda r: r["pretrain"].update(removed_setting=1)),
                         ("no_commands", lambda r: r.pop("commands"))):
        record = json.loads((folders[case] / "recipe.json").read_text())
        change(record)
        (folders[case] / "recipe.json").write_text(json.dumps(record))
    assert [p for p in verify_release(folders["not_json"], recipe) if "not readable JSON" in p]
    assert any("final.train.update is None" in p for p in verify_release(folders["no_train"], recipe))
    unknown = verify_release(folders["unknown_key"], recipe)
    assert any("the recorded pretraining config does not load" in p and "removed_setting" in p for p in unknown)
    assert any("records neither its synth command nor the corpus options" in p
               for p in verify_release(folders["no_commands"], recipe))


def test_verify_compares_the_recorded_pretrain_command_and_recipe_block(tmp_path):
    """The `xlsr pretrain` command RECIPE.md prints and the recipe block the build ran must be the recipe's."""
    import shutil

    from xlsr.released.verify import verify_release

    folder = tmp_path / MONO
    shutil.copytree(shipped(MONO), folder)
    record = json.loads((folder / "recipe.json").read_text())
    record["commands"][1] = record["commands"][1].replace("--alpha 0.5", "--alpha 1.0") + " --device cpu"
    record["recipe"]["max_updates"] = 5
    (folder / "recipe.json").write_text(json.dumps(record))
    problems = verify_release(folder, RELEASES[MONO])
    assert any("(xlsr pretrain) --alpha is '1.0', the recipe says '0.5'" in p for p in problems)
    assert any("recipe.max_updates is 5, the recipe says 1600" in p for p in problems)
    assert len(problems) == 2, problems  # a machine setting (--device) is no difference


def test_verify_reads_synth_commands_with_the_cli_defaults():
    # verify.py reads recorded commands without the CLI (released sits below cli): its defaults must be the CLI's
    from xlsr.cli.main import build_parser
    from xlsr.cli.synth import corpus_options
    from xlsr.released.verify import SYNTH_DEFAULTS

    args = build_parser(["synth"]).parse_args(["synth", "--out", "x"])
    assert corpus_options(args) == SYNTH_DEFAULTS
