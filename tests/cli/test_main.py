"""The `xlsr` dispatcher: the command list starts without torch; the chosen command gets its full options."""

import subprocess
import sys

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
