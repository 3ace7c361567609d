"""`xlsr analyze --help` says what a codeword is (the G groups' joint choice, not one group's entry) and what it writes."""

import pytest

from xlsr.cli.main import main


def test_help_says_codewords_are_the_groups_joint_choice(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one of V^G" in text and "not counted per group" in text
    assert "OUT/codeword_counts.npz" in text
