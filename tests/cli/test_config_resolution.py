"""What `xlsr pretrain` / `xlsr finetune` hand to training: defaults < recipe < --config YAML < command line, a
--recipe on the command line over one named in the YAML, a freeze count given with a ratio kept, words such as
`none` kept where a setting is a string, and bad values refused in one line. The training function is replaced by
a stand-in that records the configuration it receives, so nothing trains."""

from dataclasses import fields

import pytest

from xlsr.cli.main import main
from xlsr.config import load_config
from xlsr.errors import XlsrError
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.pretrain import PretrainConfig
from xlsr.train.recipes import recipe_path
from xlsr.train.trainer_config import TrainerConfig


class Received(Exception):
    """Raised by the stand-in training function, holding the configuration it was given."""


@pytest.fixture
def trained(monkeypatch):
    """`trained(argv)`: the config `xlsr pretrain|finetune ARGV` would train with."""
    import xlsr.train.finetune
    import xlsr.train.pretrain

    def receive(cfg):
        raise Received(cfg)

    monkeypatch.setattr(xlsr.train.pretrain, "pretrain", receive)
    monkeypatch.setattr(xlsr.train.finetune, "finetune", receive)

    def run(argv):
        with pytest.raises(Received) as exc:
            main([str(a) for a in argv])
        return exc.value.args[0]
    return run


def _refused(argv, capsys) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    return err.strip()


def test_pretrain_command_line_beats_config_beats_recipe_beats_defaults(trained, tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lr: 1.0e-3\nmax_updates: 300\nmodel:\n  mask_length: 4\n")
    cfg = trained(["pretrain", "--recipe", "tiny-demo", "--config", yaml_file, "--data", "d", "--out", "r",
                   "--max-updates", "20", "--model.mask_prob", "0.4"])
    assert isinstance(cfg, PretrainConfig) and (cfg.recipe, cfg.data, cfg.out) == ("tiny-demo", "d", "r")
    assert cfg.max_updates == 20  # command line over the YAML (300) and the recipe (1600)
    assert cfg.lr == 1e-3  # the YAML over the recipe (2e-3)
    assert (cfg.update_freq, cfg.warmup_updates, cfg.clip_norm) == (2, 40, 5.0)  # the recipe over the defaults
    assert cfg.lr_schedule == PretrainConfig().lr_schedule  # no one set it
    # the model section merges key by key in the same order
    assert (cfg.model["mask_prob"], cfg.model["mask_length"], cfg.model["num_negatives"]) == (0.4, 4, 20)


def test_finetune_command_line_manifests_and_settings_beat_the_config_file(trained, tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("train: [y.jsonl]\ndev: [yd.jsonl]\nlr: 1.0e-4\nlabels: chars\n")
    cfg = trained(["finetune", "--config", yaml_file, "--train", "a.jsonl", "b.jsonl", "--dev", "c.jsonl",
                   "--out", "r", "--lr", "3e-4", "--init", "pre"])
    assert isinstance(cfg, FinetuneConfig)
    assert (cfg.train, cfg.dev, cfg.lr, cfg.labels, cfg.init) == (["a.jsonl", "b.jsonl"], ["c.jsonl"], 3e-4, "chars",
                                                                  "pre")
    cfg = trained(["finetune", "--config", yaml_file, "--out", "r"])
    assert (cfg.train, cfg.dev, cfg.lr) == (["y.jsonl"], ["yd.jsonl"], 1e-4)  # not given: the YAML's


def test_a_recipe_on_the_command_line_wins_over_one_named_in_the_config(trained, tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("recipe: vox-1h\n")
    cfg = trained(["finetune", "--config", yaml_file, "--recipe", "vox-100h", "--train", "t.jsonl", "--out", "r"])
    assert (cfg.recipe, cfg.max_updates, cfg.lr) == ("vox-100h", 80000, 3e-5)  # vox-1h: 13000 updates at 3e-4


def test_a_freeze_count_given_with_a_ratio_is_kept(trained):
    base = ["finetune", "--train", "t.jsonl", "--out", "r", "--max-updates", "100"]
    cfg = trained([*base, "--freeze-ratio", "0.3", "--freeze-updates", "7"])
    assert (cfg.freeze_ratio, cfg.freeze_updates) == (0.3, 7)
    cfg = trained([*base, "--freeze-updates", "7", "--recipe", "vox-10m", "--max-updates", "20000"])
    assert cfg.freeze_updates == 7  # the command line's count over the recipe's 10000


def test_none_is_a_word_where_a_setting_is_a_string(trained):
    cfg = trained(["finetune", "--train", "t.jsonl", "--out", "r", "--init", "none", "--augment", "none",
                   "--vocab", "none"])
    assert (cfg.init, cfg.augment, cfg.vocab) == ("none", "none", None)  # vocab may be unset: none is null there
    yaml_init = load_config(FinetuneConfig, None, {"init": "None"})
    assert yaml_init.init == "None"


@pytest.mark.parametrize("option, value, words", [
    ("--adam-betas", "0.9", "adam_betas: cannot use '0.9' as tuple"),  # one beta where Adam takes two
    ("--adam-betas", "0.9,0.98,0.5", "adam_betas: cannot use '0.9,0.98,0.5' as tuple"),
    ("--tensorboard", "2", "tensorboard: cannot use '2' as bool"),  # only 0/1, true/false, yes/no
    ("--clip-norm", "-1", "clip_norm=-1"),  # a negative norm would silently mean no clipping
])
def test_bad_values_are_refused_in_one_line_before_training(option, value, words, trained, tmp_path, capsys):
    err = _refused(["finetune", "--train", "t.jsonl", "--out", tmp_path / "r", option, value], capsys)
    assert err.startswith("xlsr: error: ") and words in err
    assert not (tmp_path / "r").exists()


def test_a_list_of_the_wrong_length_is_refused(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("adam_betas: [0.9]\n")
    with pytest.raises(XlsrError, match=r"run.yaml: adam_betas: cannot use \[0.9\] as tuple"):
        load_config(PretrainConfig, [yaml_file])
    with pytest.raises(XlsrError, match="adam_betas: cannot use '0.9,' as tuple"):
        load_config(FinetuneConfig, None, {"adam_betas": "0.9,"})


def test_booleans_and_lists_read_as_documented(trained):
    cfg = trained(["pretrain", "--data", "d", "--out", "r", "--tensorboard", "0", "--progress", "yes",
                   "--langs", "es,it,", "--adam-betas", "0.8,0.9"])
    assert (cfg.tensorboard, cfg.progress, cfg.langs, tuple(cfg.adam_betas)) == (False, True, ["es", "it"], (0.8, 0.9))
    yaml_cfg = load_config(PretrainConfig, None, {"progress": "no", "tensorboard": "Yes"})
    assert (yaml_cfg.progress, yaml_cfg.tensorboard) == (False, True)


def test_a_recipe_name_is_a_name_not_a_path(capsys, tmp_path):
    for name in ("../tiny-demo", "finetune/vox-10m", "..\\tiny-demo"):
        with pytest.raises(XlsrError, match="no such"):
            recipe_path(name, "finetune" if name.startswith("..") else "pretrain")
    err = _refused(["finetune", "--recipe", "../tiny-demo", "--train", "t.jsonl", "--out", tmp_path / "r"], capsys)
    assert err.startswith("xlsr: error: --recipe ../tiny-demo: no such finetune recipe")


def test_an_empty_model_section_keeps_the_recipes_model_settings(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("model: {}\n")
    cfg = load_config(FinetuneConfig, [recipe_path("vox-1h", "finetune"), yaml_file])
    assert (cfg.model["mask_prob"], cfg.model["mask_channel_length"]) == (0.75, 64)
    cfg = load_config(PretrainConfig, [recipe_path("tiny-demo"), yaml_file])
    assert cfg.model["extractor_mode"] == "group_norm"


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_exit_status_is_130_unless_the_run_reached_max_updates(command, monkeypatch, tmp_path, capsys):
    import xlsr.train.checkpoint
    import xlsr.train.finetune
    import xlsr.train.pretrain

    seen = []
    monkeypatch.setattr(xlsr.train.pretrain, "pretrain", lambda cfg: tmp_path / "r")
    monkeypatch.setattr(xlsr.train.finetune, "finetune", lambda cfg: tmp_path / "r")
    finished = {"now": False}
    monkeypatch.setattr(xlsr.train.checkpoint, "run_finished",
                        lambda run_dir, max_updates: seen.append((run_dir, max_updates)) or finished["now"])
    argv = [command, "--data", "d", "--train", "t.jsonl", "--out", str(tmp_path / "r"), "--max-updates", "9"]
    argv = [a for a in argv if a not in (("--train", "t.jsonl") if command == "pretrain" else ("--data", "d"))]
    assert main(argv) == 130  # stopped early (Ctrl-C, SIGTERM): `xlsr ... && next-step` must not go on
    finished["now"] = True
    assert main(argv) == 0
    assert seen == [(tmp_path / "r", 9)] * 2


def test_the_trainer_gets_the_tasks_own_trainer_settings():
    cfg = FinetuneConfig(out="r", keep_last=3, valid_every=7, save_every=5, lr=1e-4, max_updates=90)
    trainer = cfg.trainer_config()
    assert type(trainer) is TrainerConfig
    assert {f.name: getattr(trainer, f.name) for f in fields(TrainerConfig)} == \
        {f.name: getattr(cfg, f.name) for f in fields(TrainerConfig)}
    assert FinetuneConfig().trainer_config().keep_last == 1  # fine-tuning's default, not the Trainer's 2


def test_one_manifest_given_as_a_string_is_a_list_of_one():
    cfg = FinetuneConfig(train="a.jsonl", dev="b.jsonl")
    assert (cfg.train, cfg.dev) == (["a.jsonl"], ["b.jsonl"])


def test_several_config_files_apply_in_order_the_last_recipe_named_among_them_too(trained, tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("recipe: tiny-demo\nmax_updates: 2\nlr: 0.001\n")
    second.write_text("lr: 0.002\n")
    cfg = trained(["pretrain", "--data", tmp_path, "--out", tmp_path / "run", "--config", first, "--config", second])
    assert (cfg.max_updates, cfg.lr, cfg.recipe) == (2, 0.002, "tiny-demo")  # argparse kept only the last file
    demo = load_config(PretrainConfig, [recipe_path("tiny-demo", "pretrain")])
    assert cfg.warmup_updates == demo.warmup_updates  # the recipe that the first file named was applied


@pytest.mark.parametrize("option", ["--config", "--recipe"])
def test_an_empty_config_or_recipe_name_is_refused_not_taken_for_the_defaults(tmp_path, capsys, option):
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run"), option, ""]) == 2
    assert capsys.readouterr().err == f"xlsr: error: {option}: an empty name; give one, or leave {option} out\n"
    assert not (tmp_path / "run").exists()


def test_a_run_s_own_config_yaml_with_no_recipe_is_a_config_like_any_other(trained, tmp_path):
    """(a run's config.yaml records `recipe: null`: taken for a recipe named "None" once --config could be given twice)"""
    run_yaml = tmp_path / "config.yaml"
    run_yaml.write_text("recipe: null\nmax_updates: 3\n")
    cfg = trained(["pretrain", "--data", tmp_path, "--out", tmp_path / "run", "--config", run_yaml])
    assert (cfg.max_updates, cfg.recipe) == (3, None)
