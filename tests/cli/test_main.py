"""The `xlsr` dispatcher: the command list starts without torch; the chosen command gets its full options."""

import io
import subprocess
import sys

import pytest

from xlsr.cli.main import build_parser, main


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys\nfrom xlsr.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pretrain" in out and "finetune" in out and "transcribe" in out
    assert out.strip().splitlines()[-1] == "False"


def test_chosen_command_gets_its_full_options(capsys):
    from xlsr.config import collect_overrides

    argv = ["pretrain", "--data", "d", "--out", "r", "--max-updates", "7"]
    assert collect_overrides(build_parser(argv).parse_args(argv)) == {"data": "d", "out": "r", "max_updates": "7"}
    # without argv (as tests and tools call it) every command is built in full
    assert collect_overrides(build_parser().parse_args(["finetune", "--lr", "1e-3"])) == {"lr": "1e-3"}
    assert main(["finetune", "--max-updates", "3"]) == 2
    assert "out: give a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["transcribe", "--model", "m", "a.wav", "--out", "o.jsonl", "--beam", "0"], "'0': give a whole number above 0"),
    (["transcribe", "--model", "m", "a.wav", "--out", "o.jsonl", "--chunk-seconds", "nan"], "give a finite number"),
    (["analyze", "--model", "m", "--data", "d", "--out", "o", "--max-seconds", "0"], "'0': give a number above 0"),
    (["synth", "--out", "", "--langs", "it"], "give a folder name, not an empty string"),
])
def test_numbers_and_names_out_of_range_are_refused_by_the_parser(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and words in capsys.readouterr().err


def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(monkeypatch, capsys):
    # `xlsr synth --list | head -1`: the pipe closes under the writer; no "error" line, the shell's SIGPIPE status
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["synth", "--list"]) == 141
    assert capsys.readouterr().err == ""


def test_ctrl_c_while_the_command_s_modules_import_is_one_line(monkeypatch, capsys):
    from xlsr.cli import INTERRUPTED
    from xlsr.cli import main as cli_main

    def interrupted(argv=None):  # Ctrl-C in the second or so the parser spends importing torch
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert cli_main.main(["pretrain", "--help"]) == INTERRUPTED
    assert capsys.readouterr().err == "xlsr: interrupted\n"
