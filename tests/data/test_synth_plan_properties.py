"""Promises of `xlsr synth`'s plan (docs/synth.md): a language's plan does not depend on the languages beside it,
every word count of --words-per-utt occurs, and each manifest line is its plan's utterance."""

import pytest

from xlsr.data.augment import DEFAULT_AUGMENT, parse_augment
from xlsr.data.manifest import read_manifest
from xlsr.data.synth import corpus as synth_corpus
from xlsr.data.synth.corpus import plan_corpus
from xlsr.data.synth.espeak import engine
from xlsr.data.synth.languages import LANGUAGES, parse_languages
from xlsr.data.synth.phones import espeak_phones


@pytest.fixture
def numbered_words(monkeypatch):
    """Texts drawn from the plan's generator without espeak's word lists (a plan in milliseconds)."""
    monkeypatch.setattr(synth_corpus, "sample_text",
                        lambda code, rng, n: " ".join(f"{code}{w}" for w in rng.integers(0, 10**6, n)))


def _plan_of(plans, lang):
    return [(p.id, p.split, p.speaker, p.text, p.noise_seed, p.effects) for p in plans if p.lang == lang]


def test_a_languages_plan_is_the_same_alone_and_beside_others(numbered_words):
    """"One generator per language": texts, speakers and effect draws of `it` whatever else is synthesized."""
    kw = dict(speakers_per_lang=6, voices="varied", augment=parse_augment(DEFAULT_AUGMENT))
    alone = plan_corpus(parse_languages("it"), 10, 5, **kw)
    for langs in ("es,it", "it,es", "de,ru,it"):
        assert _plan_of(plan_corpus(parse_languages(langs), 10, 5, **kw), "it") == _plan_of(alone, "it"), langs
    assert _plan_of(plan_corpus(parse_languages("it"), 10, 6, **kw), "it") != _plan_of(alone, "it")  # the seed


def test_every_word_count_of_the_range_occurs(numbered_words):
    for lo, hi in ((2, 4), (1, 2), (3, 3)):
        plans = plan_corpus([LANGUAGES["es"]], 60, 1, words_per_utt=(lo, hi))
        assert {len(p.text.split()) for p in plans} == set(range(lo, hi + 1)), (lo, hi)


def test_each_manifest_line_is_its_plans_text_speaker_and_phones(corpus):
    """The session corpus (tests/data/conftest.py) against its plan: the line of utterance X has X's text, X's
    speaker id (the one synth.json and the summary count) and the phones espeak gives for that text."""
    out, summary = corpus
    plans = {p.id: p for p in plan_corpus(parse_languages("es,de,zh"), 6, 3, speakers_per_lang=3,
                                          words_per_utt=(2, 4), voices="varied",
                                          augment=parse_augment(DEFAULT_AUGMENT))}
    espeak, seen = engine(), 0
    for lang in ("es", "de", "zh"):
        espeak.set_voice(LANGUAGES[lang].voice)
        for split in ("train", "dev", "test"):
            utts = read_manifest(out / lang / f"{split}.jsonl")
            assert {u.speaker for u in utts} == set(summary.speakers[lang][split])
            for u in utts:
                plan, seen = plans[u.id], seen + 1
                assert (u.lang, u.text, u.speaker) == (lang, plan.text, plan.speaker.id)
                assert u.audio.endswith(f"/{lang}/audio/{u.id}.flac")
                ascii_ = espeak.phonemize(u.text, ipa=False) if LANGUAGES[lang].tones else None
                assert u.phones == " ".join(espeak_phones(espeak.phonemize(u.text), ascii_, LANGUAGES[lang]))
    assert seen == len(plans) == 18
