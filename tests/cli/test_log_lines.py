"""The library's warnings, shown by the `xlsr` command as its own lines (`xlsr: warning:`), once each."""

from __future__ import annotations

import logging

from xlsr.cli.log_lines import show_library_log
from xlsr.cli.main import main


def test_library_records_read_as_the_commands_own_lines(capsys):
    show_library_log()
    show_library_log()  # a second call (main run twice in one process) adds no second handler
    logging.getLogger("xlsr.train.pretrain").warning("no dev manifests")
    logging.getLogger("xlsr.data.batching").info("not shown: details stay out of a refusal's one line")
    logging.getLogger("elsewhere").warning("not ours")  # other libraries' records are not given our prefix
    err = capsys.readouterr().err
    assert "xlsr: warning: no dev manifests\n" in err and err.count("no dev manifests") == 1
    assert "not shown" not in err and "xlsr: warning: not ours" not in err


def test_the_command_turns_it_on(capsys):
    assert main(["synth", "--list"]) == 0
    capsys.readouterr()
    logging.getLogger("xlsr.decode.beam").warning("lexicon: 2 of 9 words cannot be spelled")
    assert capsys.readouterr().err == "xlsr: warning: lexicon: 2 of 9 words cannot be spelled\n"
