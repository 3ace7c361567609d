"""`xlsr evaluate` refused for its options leaves nothing behind: the folders of --json and --hyps are made only once
the command is not refused (an evaluation then makes them before any recording is decoded)."""

import pytest

from xlsr.cli.main import main


@pytest.mark.parametrize("options, said", [
    (["--lm-weight", "1"], "--lm-weight: weighs the scores of a language model; give --lm with it"),
    (["--lm-weight", "0", "1"], "--lm-weight/--word-score with several values: give --lm (or --lexicon) to sweep them"),
    (["--hyps", "{t}/new/h.jsonl", "--json", "{t}/new/h.jsonl.partial"],
     "--hyps {t}/new/h.jsonl: its transcripts would be kept in {t}/new/h.jsonl.partial, which is --json "
     "{t}/new/h.jsonl.partial; give --hyps another file name"),
])
def test_a_refused_evaluation_makes_no_output_folder(tmp_path, capsys, options, said):
    args = ["evaluate", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "test.jsonl"),
            "--json", str(tmp_path / "new" / "deeper" / "report.json"), *(o.format(t=tmp_path) for o in options)]
    assert main(args) == 2
    assert capsys.readouterr().err == f"xlsr: error: {said.format(t=tmp_path)}\n"
    assert list(tmp_path.iterdir()) == []
