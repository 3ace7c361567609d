"""A user driving `xlsr pretrain` / `xlsr finetune` through --config files and --key overrides: an abbreviated key is
refused rather than read as a longer one, a settings file that is a folder, has tabs or is JSON is named in one line
that says what is wrong and where, a key given twice in one file (in a section and dotted) is refused, a near typo is
named with the key meant, and the defaults `--help` shows are values the command line takes back."""

from __future__ import annotations

import re

import pytest

from xlsr.cli.main import build_parser, main
from xlsr.config import config_to_dict, load_config, read_yaml, save_config
from xlsr.errors import XlsrError
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.pretrain import PretrainConfig


def _parse_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        build_parser(argv).parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("command, option, value", [
    ("pretrain", "--final-lr", "1e-5"),  # argparse read it as --final-lr-scale: a scale where a rate was meant
    ("pretrain", "--model.num_codevectors", "640"),  # read as num_codevectors_per_group
    ("finetune", "--head-lr", "1e-3"),  # read as head_lr_scale
])
def test_an_abbreviated_key_is_refused_not_read_as_a_longer_one(command, option, value, capsys):
    err = _parse_error([command, "--out", "r", option, value], capsys)
    assert f"unrecognized arguments: {option} {value}" in err


def test_whole_keys_are_still_taken_in_both_spellings():
    args = build_parser(["pretrain"]).parse_args(["pretrain", "--final-lr-scale", "0.1", "--model.latent-temp",
                                                   "2,0.5,0.99", "--final_lr_scale", "0.2"])
    assert vars(args)["config:final_lr_scale"] == "0.2" and vars(args)["config:model.latent_temp"] == "2,0.5,0.99"


def test_a_folder_given_as_config_is_named_a_folder(tmp_path):
    folder = tmp_path / "run.yaml"
    folder.mkdir()
    with pytest.raises(XlsrError) as err:
        read_yaml(folder)
    assert str(err.value) == f"{folder}: a folder, not a config file"


@pytest.mark.parametrize("text, problem", [
    ("lr: 1e-3\nmodel:\n\tmask_prob: 0.5\n",
     "line 3, column 1: found character '\\t' that cannot start any token; use spaces, not tabs"),
    ("model:\n  mask_prob: 0.3\n   mask_length: 4\n", "line 3, column 15: mapping values are not allowed here"),
    ("lr: [0.1, 0.2\n", "line 2, column 1: expected ',' or ']', but got '<stream end>'"),
])
def test_invalid_yaml_says_what_and_where(tmp_path, text, problem):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(XlsrError) as err:
        read_yaml(path)
    assert str(err.value) == f"{path}: not valid YAML ({problem})"


def test_json_indented_with_tabs_is_read_and_a_key_given_twice_in_it_is_refused(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{\n\t"lr": 0.001,\n\t"model": {\n\t\t"mask_prob": 0.3\n\t}\n}\n')
    cfg = load_config(PretrainConfig, [path])
    assert (cfg.lr, cfg.model) == (0.001, {"mask_prob": 0.3})
    path.write_text('{\n\t"lr": 0.001,\n\t"lr": 0.002\n}\n')
    with pytest.raises(XlsrError) as err:
        read_yaml(path)
    assert str(err.value) == f"{path}: not valid YAML (key 'lr' given twice)"


def test_a_key_given_in_a_section_and_dotted_in_one_file_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  mask_prob: 0.2\nmodel.mask_prob: 0.3\n")
    with pytest.raises(XlsrError) as err:
        load_config(FinetuneConfig, [path])
    assert str(err.value) == f"{path}: key 'model.mask_prob' given twice (in a section and as a dotted key)"
    # a section in one file and the dotted key in the next (or on the command line) is an override, as before
    later = tmp_path / "later.yaml"
    later.write_text("model.mask_prob: 0.4\n")
    path.write_text("model:\n  mask_prob: 0.2\n")
    assert load_config(FinetuneConfig, [path, later], {"model.mask_length": "4"}).model["mask_prob"] == 0.4


def test_a_near_typo_names_the_key_meant(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("max_update: 5\n")
    with pytest.raises(XlsrError) as err:
        load_config(PretrainConfig, [path])
    assert str(err.value) == f"{path}: unknown config key 'max_update' (did you mean 'max_updates'?)"
    with pytest.raises(XlsrError) as err:
        load_config(PretrainConfig, None, {"zzz": "1"})
    assert str(err.value) == "command line: unknown config key 'zzz'"  # nothing near: no guess


@pytest.mark.parametrize("overrides, words", [
    ({"phase_ratio": "0.1,0.4"}, "phase_ratio: cannot use '0.1,0.4' as tuple of 3 floats"),
    ({"adam_betas": "0.9"}, "adam_betas: cannot use '0.9' as tuple of 2 floats"),
    ({"langs": "[[1]]"}, "langs: cannot use '[[1]]' as list of str | None"),
])
def test_a_wrong_count_of_values_says_how_many_are_taken(overrides, words):
    with pytest.raises(XlsrError) as err:
        load_config(PretrainConfig, None, overrides)
    assert str(err.value) == f"command line: {words}"


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command, cls", [("pretrain", PretrainConfig), ("finetune", FinetuneConfig)])
def test_the_defaults_help_shows_are_values_the_command_line_takes_back(command, cls, capsys):
    text = _help(command, capsys)
    for key in ("phase_ratio", "adam_betas"):
        option = "--" + key.replace("_", "-")
        shown = re.search(rf" {option} \S+ .*?default (\S+?)\)", text).group(1)
        assert shown == ",".join(str(v) for v in getattr(cls(), key)), (option, shown)  # no "(0.9," fragment
        assert getattr(load_config(cls, None, {key: shown}), key) == getattr(cls(), key)
    assert "--adam_betas A,B, --adam-betas A,B " in text  # the metavar: exactly two values


def test_the_cnn_layers_metavar_is_the_bracketed_rows_the_command_line_takes(capsys):
    assert "--model.conv-layers [[A,B,C],...]" in _help("pretrain", capsys)  # it said A,B,..., which is refused


def test_a_run_config_saved_then_given_as_config_is_the_same_config(tmp_path):
    given = {"out": "r", "data": "d", "lr": "1e-3", "max_updates": "7", "phase_ratio": "0.2,0.3,0.5",
             "langs": "es,it", "warmup_updates": "none", "model.latent_temp": "2.0,0.5,0.999",
             "model.mask_prob": "0.3", "compile": "yes"}
    first = load_config(PretrainConfig, None, given)
    save_config(first, tmp_path / "config.yaml")
    again = load_config(PretrainConfig, [tmp_path / "config.yaml"])
    assert config_to_dict(again) == config_to_dict(first)
    assert (again.lr, again.phase_ratio, again.langs, again.warmup_updates, again.compile) == \
        (1e-3, (0.2, 0.3, 0.5), ["es", "it"], None, True)
