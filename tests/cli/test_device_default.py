"""Every command that runs a model picks its device as training does: --device auto (a GPU when there is one) by
default (training's own default too), so a user with a GPU does not transcribe a thousand hours on the CPU for want of a flag."""

import pytest

from xlsr.cli.main import build_parser

COMMANDS = {
    "transcribe": ["--model", "m", "--out", "o.jsonl", "a.wav"],
    "evaluate": ["--model", "m", "--manifest", "t.jsonl"],
    "stream": ["--model", "m", "-"],
    "analyze": ["--model", "m", "--data", "d", "--out", "o"],
    "probe": ["--model", "m", "--train", "t.jsonl", "--test", "t.jsonl", "--out", "o"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_the_default_device_is_auto(command):
    argv = [command, *COMMANDS[command]]
    args = build_parser(argv).parse_args(argv)
    assert args.device == "auto"
