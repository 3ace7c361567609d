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



def test_sigterm_stops_a_command_as_ctrl_c_does_with_status_143_and_puts_the_handler_back(monkeypatch):
    """(SIGTERM, a service manager's or SLURM's stop, ended `xlsr transcribe` without a word: its kept results unsaid)"""
    import os
    import signal
    import time

    from xlsr.cli import main as cli_main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    said = []

    def command(args):  # a long command that says what it kept when stopped, as transcribe does
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            said.append("kept")
            return cli_main.INTERRUPTED
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli_main, "_run_command", command)
    started = time.monotonic()
    assert cli_main.main(["plot", "x"]) == 143
    assert time.monotonic() - started < 4 and said == ["kept"]
    assert signal.getsignal(signal.SIGTERM) is before
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun SIGTERM keeps its default (torchrun's teardown)
    with cli_main._sigterm_as_ctrl_c():
        assert signal.getsignal(signal.SIGTERM) is before
