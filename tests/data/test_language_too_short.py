"""A pretraining language none of whose utterances reaches min_sample_size stops the run in one line naming it,
instead of dropping out of the α table unnoticed (the low-resource language of few, short recordings)."""

import pytest

from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import Utterance
from xlsr.errors import XlsrError


def _utts(lang: str, seconds: list[float]) -> list[Utterance]:
    return [Utterance(audio=f"/nowhere/{lang}{i}.wav", num_samples=int(s * 16000), lang=lang, id=f"{lang}{i}")
            for i, s in enumerate(seconds)]


def test_a_language_of_short_utterances_only_is_named():
    utts = _utts("en", [4.0] * 6) + _utts("sw", [1.5, 2.5]) + _utts("fi", [1.0])
    with pytest.raises(XlsrError) as exc:
        pretrain_loader(utts, max_tokens=200_000, min_sample_size=48000, max_sample_size=64000)
    assert str(exc.value) == ("language fi (and sw): none of its 1 utterances is at least min_sample_size=48000 "
                              "samples (3 s) long (the longest: 1.00 s), so it would not be trained on; lower "
                              "--min-sample-size, or leave it out (--langs)")


def test_a_language_keeping_one_utterance_is_trained_on():
    utts = _utts("en", [4.0] * 6) + _utts("sw", [1.5, 3.5])
    loader = pretrain_loader(utts, max_tokens=200_000, min_sample_size=48000, max_sample_size=64000)
    drawn = {utts_lang for plan in loader.plans() for utts_lang in
             (loader.dataset.utts.lang(i) for i in plan.indices)}
    assert drawn == {"en", "sw"}
