"""Background talkers for babble noise in a synthesized corpus: speakers of its languages outside the corpus.

Rendered once per process on first use (memoized on the seed and languages), so every worker holds the
same talkers whatever utterances it was given. The same talkers sit behind utterances of every split:
they are background, not the speakers whose speech is labeled (those stay disjoint across splits).
They depend on the languages (and their order) of the `synthesize_corpus` call, so a language's utterances with
babble noise differ between calls with other language lists; synth.json records each language's list.
"""

from __future__ import annotations

import functools

import numpy as np

from xlsr.data.synth.languages import get_language
from xlsr.data.synth.speakers import make_speakers, speak
from xlsr.data.synth.text import sample_text

TALKERS = 8  # utterances in the pool; each babble noise sums 3-6 of them (augment.BABBLE_TALKERS)
WORDS = 12  # per talker: ~4 s, looped from a random start when an utterance is longer


@functools.lru_cache(maxsize=2)
def babble_talkers(seed: int, langs: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """`TALKERS` utterances (16 kHz float32) by background speakers of `langs`, the same for the same seed."""
    rng = np.random.default_rng([seed, 0xBAB])
    talkers = []
    for i in range(TALKERS):
        lang = get_language(langs[i % len(langs)])
        (speaker,) = make_speakers(lang, 1, rng, voices="varied", prefix=f"babble{i}-")
        talkers.append(speak(speaker, sample_text(lang.code, rng, WORDS), seed=int(rng.integers(2**31))))
    return tuple(talkers)
