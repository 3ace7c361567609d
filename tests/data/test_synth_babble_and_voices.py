"""The background talkers of babble noise (from the seed, of every language of the call), the language list, and
each language's espeak-ng voice."""

from pathlib import Path

import espeakng_loader
import numpy as np
import pytest

from xlsr.data.synth import babble
from xlsr.data.synth.babble import TALKERS, babble_talkers
from xlsr.data.synth.languages import LANGUAGES, parse_languages


@pytest.fixture(autouse=True)
def fresh_talkers():
    babble_talkers.cache_clear()
    yield
    babble_talkers.cache_clear()


def test_the_seed_picks_the_talkers():
    one, other = babble_talkers(1, ("es",)), babble_talkers(2, ("es",))
    babble_talkers.cache_clear()
    again = babble_talkers(1, ("es",))
    assert len(one) == TALKERS and all(len(t) > 16000 for t in one)  # ~4 s each
    assert all(np.array_equal(a, b) for a, b in zip(one, again))
    assert not any(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(one, other))
    assert len({len(t) for t in one}) > 1  # different talkers and texts, not one voice repeated


def test_talkers_speak_every_language_of_the_call_in_turn(monkeypatch):
    spoken = []
    monkeypatch.setattr(babble, "sample_text", lambda code, rng, n: code)
    monkeypatch.setattr(babble, "speak", lambda speaker, text, seed: spoken.append((speaker, text)) or np.zeros(1))
    babble_talkers(3, ("es", "de", "zh"))
    assert [text for _, text in spoken] == ["es", "de", "zh"] * 2 + ["es", "de"]
    assert [speaker.voice.split("+")[0] for speaker, _ in spoken] == ["es", "de", "cmn"] * 2 + ["es", "de"]
    assert all("babble" in speaker.id for speaker, _ in spoken)  # extra speakers, not the corpus's


def test_a_language_given_twice_is_synthesized_once():
    assert [lang.code for lang in parse_languages("es, it,es,,de,it")] == ["es", "it", "de"]


def test_every_languages_voice_is_an_espeak_voice_of_that_language():
    """espeak-ng's voice file named by the table declares the language (`language de`; Mandarin's cmn: `zh`)."""
    files = {p.name.lower(): p for p in (Path(espeakng_loader.get_data_path()) / "lang").rglob("*") if p.is_file()}
    for lang in LANGUAGES.values():
        declared = [line.split()[1].split("-")[0] for line in files[lang.voice.lower()].read_text().splitlines()
                    if line.startswith("language ")]
        assert lang.code in declared, (lang.code, lang.voice, declared)
