"""--lm-weight and --word-score given where they would have no effect are refused in one line naming the option and
what it needs, in `xlsr transcribe` and in `xlsr evaluate` (one value as several), before any model loads."""

import pytest

from xlsr.cli.main import main

LM_WEIGHT = "--lm-weight: weighs the scores of a language model; give --lm with it"
WORD_SCORE = "--word-score: a beam-search setting, which greedy decoding ignores; give --lm, --lexicon or --beam with it"


def _argv(command, tmp_path):
    model = ["--model", str(tmp_path / "no-model")]
    if command == "transcribe":
        return ["transcribe", *model, str(tmp_path / "a.wav"), "--out", str(tmp_path / "o.jsonl")]
    return ["evaluate", *model, "--manifest", str(tmp_path / "dev.jsonl")]


@pytest.mark.parametrize("command", ["transcribe", "evaluate"])
@pytest.mark.parametrize("given, said", [(["--lm-weight", "1"], LM_WEIGHT),
                                         (["--lm-weight", "1", "--lexicon", "words.txt"], LM_WEIGHT),
                                         (["--lm-weight", "1", "--beam", "8"], LM_WEIGHT),
                                         (["--word-score", "1"], WORD_SCORE)])
def test_a_score_option_without_its_decoder_is_refused(tmp_path, capsys, command, given, said):
    assert main([*_argv(command, tmp_path), *given]) == 2
    assert capsys.readouterr().err == f"xlsr: error: {said}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["transcribe", "evaluate"])
@pytest.mark.parametrize("given", [["--word-score", "1", "--beam", "8"], ["--word-score", "1", "--lexicon", "w.txt"],
                                   ["--lm-weight", "1", "--word-score", "-1", "--lm", "lm.arpa"]])
def test_a_score_option_with_its_decoder_goes_on_to_the_model(tmp_path, capsys, command, given):
    assert main([*_argv(command, tmp_path), *given]) == 2  # the model is missing: that is the next thing said
    err = capsys.readouterr().err
    assert "no-model" in err and "--lm-weight" not in err and "--word-score" not in err
