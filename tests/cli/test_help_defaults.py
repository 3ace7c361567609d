"""What `--help` shows as a default is what a run with that default uses; `xlsr synth --list` needs no --out."""

import re

import pytest

from xlsr.cli.main import build_parser, main


def _help(command: str, capsys) -> str:
    """The text of `xlsr COMMAND --help`, on one line (argparse wraps it to the terminal's width)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def _shown_defaults(command: str, capsys) -> dict[str, str]:
    """{model field: the words after 'default' in its help}, from `xlsr COMMAND --help`."""
    helps = re.findall(r"--model\.([a-z_]+) \S+(?:, --model\.[a-z-]+ \S+)? (.*?)(?= --model\.[a-z_]+ |$)",
                       _help(command, capsys))
    return {key: m.group(1) for key, text in helps if (m := re.search(r"default:? ([^()]*)\)$", text))}


def test_finetune_help_shows_the_model_settings_a_run_uses(capsys):
    from xlsr.cli.finetune import finetune_config

    shown = _shown_defaults("finetune", capsys)
    cfg = finetune_config(build_parser(["finetune"]).parse_args(["finetune", "--out", "r"]))
    for key in ("dropout", "activation_dropout", "layerdrop", "mask_prob", "min_masks", "mask_channel_prob",
                "mask_channel_length"):
        assert shown[key] == str(cfg.model[key]), key
    assert shown["hidden_size"] == "the init's"  # the architecture comes from --init (or --preset), not a number


def test_pretrain_help_says_the_architecture_comes_from_the_preset(capsys):
    from xlsr.cli import resolve_config
    from xlsr.train.pretrain import PretrainConfig, resolve_model_config

    shown = _shown_defaults("pretrain", capsys)
    cfg = resolve_config(PretrainConfig, build_parser(["pretrain"]).parse_args(["pretrain", "--out", "r"]))
    assert resolve_model_config(cfg).hidden_size != 768  # the tiny preset: Wav2Vec2Config's own 768 is no run's
    for key in ("hidden_size", "num_layers", "ffn_dim", "extractor_mode", "mask_prob"):
        assert shown[key] == "the preset's", key


def test_synth_lists_languages_without_out_and_asks_for_out_otherwise(capsys):
    assert main(["synth", "--list"]) == 0
    assert "it  Italian" in capsys.readouterr().out
    assert main(["synth", "--langs", "it"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["xlsr: error: --out: give an output folder (only --list runs without one)"]


@pytest.mark.parametrize("option, shown", [("--langs", "es,it,de"), ("--utts-per-lang", "200"), ("--seed", "0"),
                                           ("--workers", "1"), ("--words-per-utt", "4-12")])
def test_synth_help_shows_its_defaults(option, shown, capsys):
    options = _help("synth", capsys).split(" options: ")[1]
    own = re.search(rf"{option} [A-Z_-]+ ((?:(?! --[a-z-]+ [A-Z]).)*)", options).group(1)  # up to the next option
    assert f"(default {shown})" in own, own
