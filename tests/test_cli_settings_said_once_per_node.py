"""Under torchrun every process runs the same command line on its node's files: a mistyped option or a bad setting is
said by the node's first process (LOCAL_RANK 0) alone, not once per process; the others exit with the same status
without a word. An error met after that (the run's data, a rank's own files) is still said where it is met."""

from __future__ import annotations

import pytest

from xlsr.cli import main as cli_main
from xlsr.errors import XlsrError


def _under_torchrun(monkeypatch, local_rank: int) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


def _exit_status(argv: list[str]) -> int:
    try:
        return cli_main.main(argv)
    except SystemExit as ended:  # argparse's refusals
        return ended.code


@pytest.mark.parametrize("argv", [["pretrain", "--max-updatess", "3"], ["finetune", "--lr", "fast"]])
def test_a_mistyped_option_is_said_by_the_first_process_of_the_node_alone(monkeypatch, capsys, argv):
    _under_torchrun(monkeypatch, 0)
    assert _exit_status(argv) == 2
    first = capsys.readouterr()
    assert "error:" in first.err and first.err.count("error:") == 1
    _under_torchrun(monkeypatch, 1)
    assert _exit_status(argv) == 2
    assert capsys.readouterr() == ("", "")


def test_a_bad_setting_is_said_by_the_first_process_of_the_node_alone(monkeypatch, capsys, tmp_path):
    argv = ["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(tmp_path / "no.yaml")]
    _under_torchrun(monkeypatch, 0)
    assert _exit_status(argv) == 2
    said = capsys.readouterr().err
    assert said.startswith("xlsr: error: ") and "no.yaml" in said and said.count("\n") == 1
    _under_torchrun(monkeypatch, 1)
    assert _exit_status(argv) == 2
    assert capsys.readouterr() == ("", "")


def test_an_error_met_after_the_settings_is_still_said_by_every_process_that_meets_it(monkeypatch, capsys, tmp_path):
    """(under a real torchrun, train/elastic.py has already made the later ones quiet when it was the same error)"""
    import xlsr.train.pretrain

    def fails(cfg):
        raise XlsrError(f"{cfg.data}/it/train.jsonl: line 3: not JSON")

    monkeypatch.setattr(xlsr.train.pretrain, "pretrain", fails)
    _under_torchrun(monkeypatch, 1)
    assert _exit_status(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "line 3: not JSON" in capsys.readouterr().err


def test_processes_started_by_hand_each_say_their_own(monkeypatch, capsys):
    """Without torchrun's LOCAL_RANK a process may be on another machine with other files: it speaks for itself."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert _exit_status(["pretrain", "--max-updatess", "3"]) == 2
    assert "error: unrecognized arguments: --max-updatess 3" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "said"), [
    (["pretrain", "--max-updatess", "3"],
     "xlsr pretrain: error: unrecognized arguments: --max-updatess 3; did you mean --max-updates? "
     "(see `xlsr pretrain --help`)"),
    (["data", "stats", "x", "--alphaa", "0.5"],
     "xlsr data stats: error: unrecognized arguments: --alphaa 0.5; did you mean --alpha? (see `xlsr data stats --help`)"),
    (["transcribe", "a.wav"],
     "xlsr transcribe: error: the following arguments are required: --model, --out (see `xlsr transcribe --help`)"),
    (["pretrain", "--preset"], "xlsr pretrain: error: argument --preset: expected one argument (see `xlsr pretrain --help`)"),
])
def test_the_parser_s_refusals_are_one_line_naming_the_command_and_the_option_meant(capsys, argv, said):
    """argparse printed its usage first: 47 lines for `xlsr pretrain`, the error below them."""
    assert _exit_status(argv) == 2
    assert capsys.readouterr().err == said + "\n"


def test_a_negative_number_in_exponent_form_is_a_value_not_an_option(capsys, tmp_path):
    assert _exit_status(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--lr", "-1e-3"]) == 2
    assert capsys.readouterr().err == "xlsr: error: lr and clip_norm: must not be negative, got lr=-0.001, clip_norm=10\n"
