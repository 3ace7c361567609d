"""`xlsr synth`'s summary counts its languages in words that agree with the count."""

import pytest

from xlsr.cli.main import main


@pytest.mark.usefixtures("one_thread")
def test_one_language_is_said_in_the_singular(tmp_path, capsys):
    assert main(["synth", "--langs", "it", "--utts-per-lang", "3", "--workers", "1", "--clean",
                 "--out", str(tmp_path / "syn")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("wrote 3 utterances, ") and f" of audio in 1 language to {tmp_path / 'syn'} (" in first
