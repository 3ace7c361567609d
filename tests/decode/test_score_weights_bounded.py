"""--lm-weight and --word-score far past any useful setting are refused up front (scores past them overflow to inf,
which JSON cannot hold); a score that is not finite all the same is written as null, never as `Infinity`."""

import json
import math
import re

import pytest
from decode_fixtures import AB_WORD_ARPA, frames

from xlsr.cli.main import main
from xlsr.decode.beam import BeamSearchConfig, BeamSearchDecoder
from xlsr.decode.hypothesis import Hypothesis
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary

LEXICON = {"ab": "a b |", "ba": "b a |"}


def test_a_weight_within_the_bound_keeps_scores_finite_and_one_past_it_is_refused(tmp_path):
    vocab = Vocabulary.build(["ab ba"], kind="chars")
    lm = tmp_path / "words.arpa"
    lm.write_text(AB_WORD_ARPA)
    logits = frames(vocab, ["a", "b", "|", "a", "b"])  # two words: 2 x 1e308 overflowed to inf
    for lm_weight, word_score in ((1e6, 1e6), (-1e6, -1e6), (2.0, 1e6)):
        (hyp,) = BeamSearchDecoder(vocab, lm=lm, lexicon=LEXICON,
                                   config=BeamSearchConfig(lm_weight=lm_weight, word_score=word_score)).decode(logits)
        assert math.isfinite(hyp.score)
    for name in ("lm_weight", "word_score"):
        for value in (1e308, -1.5e6):
            with pytest.raises(XlsrError, match=rf"^{name}: must be a finite number between -1e\+06 and 1e\+06 "
                                                rf"\(.*\), got {re.escape(f'{value:g}')}$"):
                BeamSearchConfig(**{name: value})


def test_transcribe_refuses_an_absurd_weight_before_loading_anything(tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["transcribe", "--model", str(tmp_path / "no-model"), str(tmp_path / "a.wav"), "--out", str(out),
                 "--lm", str(tmp_path / "no.arpa"), "--word-score", "1e300"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlsr: error: --word-score: must be a finite number between -1e+06 and 1e+06 (")
    assert err.endswith("), got 1e+300\n") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_evaluate_sweep_refuses_an_absurd_weight_among_its_values(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "no-model"), "--manifest", str(tmp_path / "dev.jsonl"),
                 "--lm", str(tmp_path / "no.arpa"), "--lm-weight", "0.5", "-2000000", "--json",
                 str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlsr: error: --lm-weight: must be a finite number between -1e+06 and 1e+06 (")
    assert err.endswith("), got -2e+06\n") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("score", [math.inf, -math.inf, math.nan])
def test_a_score_that_is_not_finite_is_written_as_null(score):
    record = Hypothesis(tokens=["a"], token_ids=[3], text="a", score=score).to_dict()
    assert json.loads(json.dumps(record, allow_nan=False)) == {"text": "a", "tokens": ["a"], "score": None}
