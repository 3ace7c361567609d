"""Every config option's `--help` says what it does: its field's source comment, then its type and default."""

import argparse
import re
from dataclasses import dataclass
from typing import Literal

import pytest

from xlsr.cli.main import build_parser, main
from xlsr.config import add_config_arguments, field_comments

TYPE_WORDS = ("int", "float", "str", "bool", "list", "tuple", "dict", "'")  # how a type-only help begins


@pytest.fixture(scope="module")
def config_commands() -> dict[str, argparse.ArgumentParser]:
    """{command: its parser} for every `xlsr` command whose options come from a config dataclass."""
    parser = build_parser()  # every command with its full options
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in sub.choices.items() if any(a.dest.startswith("config:") for a in p._actions)}


def test_every_config_option_says_what_it_does(config_commands):
    assert {"pretrain", "finetune"} <= set(config_commands)
    bare = []
    for command, parser in config_commands.items():
        for action in parser._actions:
            if not action.dest.startswith("config:"):
                continue
            text = action.help % {}  # argparse's expansion: a lone '%' raises here, as it would in --help
            words = re.sub(r" \([^()]*\)$", "", text)  # without the closing "(type, default ...)"
            if len(words.split()) < 3 or words.startswith(TYPE_WORDS):
                bare.append(f"{command} {action.option_strings[0]}: {text}")
    assert not bare, "\n".join(bare)


def _help(command: str, capsys) -> str:
    """The text of `xlsr COMMAND --help`, on one line (argparse wraps it to the terminal's width)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command, option, says", [
    ("pretrain", "--init S", "continue from these weights (ours, HF dir or fairseq .pt); fresh optimizer (str | None)"),
    ("pretrain", "--clip_norm X, --clip-norm X", "max global gradient norm; 0 = no clipping (float, default 10.0)"),
    ("pretrain", "--warmup_ratio X, --warmup-ratio X", "share of max_updates (wav2vec 2.0: 8%) (float, default 0.08)"),
    ("pretrain", "--model.mask_prob X, --model.mask-prob X", "time masks: mask_prob x frames / mask_length spans"),
    ("pretrain", "--model.mask_prob X, --model.mask-prob X", "(float, default: the preset's)"),
    ("finetune", "--init S", "or pretraining run folder; \"none\" = from scratch (str, default none)"),
    ("finetune", "--lr X", "peak learning rate (float, default 0.0005)"),  # FinetuneConfig's own default
    ("finetune", "--max_updates N, --max-updates N", "optimizer updates to train for"),  # TrainerConfig's words
    ("finetune", "--freeze_ratio X, --freeze-ratio X", "the Transformer stays frozen"),
    ("finetune", "--model.mask_prob X, --model.mask-prob X", "(float, default 0.3)"),
])
def test_help_spot_checks(command, option, says, capsys):
    text = _help(command, capsys)
    own = text.split(f" {option} ", 1)[1].split(" --", 1)[0]  # up to the next option
    assert says in own, own


# A small config to read the comments of: each way a field can be commented.
@dataclass
class _Base:
    # --- a section title belongs to no field,
    # nor the lines under it
    after_title: int = 1
    size: int = 3  # width of the thing
    rate: float = 0.5  # share of frames,
                       # continued under the trailing comment
    # not a continuation: the next field's, as a block above

    # the comment block
    # directly above
    name: str = "x"
    bare: bool = False
    pct: float = 0.1  # 10% of updates
    mode: Literal["a", "b"] = "a"
    kind: Literal["x", "y"] = "y"  # which kind
    spread: tuple[int, int] = (
        1, 2)  # over two lines


@dataclass
class _Child(_Base):
    extra: int = 0  # the subclass's own
    size: int = 5


def test_field_comments_reads_trailing_above_continued_and_inherited_comments():
    assert field_comments(_Child) == {
        "size": "width of the thing",  # redefined without a comment: the base's words, the child's default
        "rate": "share of frames, continued under the trailing comment",
        "name": "the comment block directly above",
        "pct": "10% of updates",
        "kind": "which kind",
        "spread": "over two lines",
        "extra": "the subclass's own",
    }


def test_help_of_a_small_config(capsys):
    parser = argparse.ArgumentParser(prog="demo")
    add_config_arguments(parser, _Child)
    text = " ".join(parser.format_help().split())
    assert "--size N width of the thing (int, default 5)" in text
    assert "--pct X 10% of updates (float, default 0.1)" in text
    assert "--bare BOOL bool (default False)" in text  # no comment: the type only
    assert "--after_title N, --after-title N int (default 1)" in text
    assert "--name S the comment block directly above (str, default x)" in text
    assert "--mode {a,b} 'a' | 'b' (default a)" in text  # no comment: the choices as the type
    assert "--kind {x,y} which kind (default y)" in text  # the metavar lists the choices


def test_help_without_the_source_shows_types_and_defaults(monkeypatch):
    @dataclass
    class Frozen:
        steps: int = 4  # how many steps

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr("xlsr.config.inspect.getsource", no_source)  # as in a frozen app
    parser = argparse.ArgumentParser(prog="demo")
    add_config_arguments(parser, Frozen)
    assert "--steps N int (default 4)" in " ".join(parser.format_help().split())
