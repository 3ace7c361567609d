"""Text to speak: word sequences sampled from wordfreq's frequency list of each language.

wordfreq silently answers with another language's list for codes it lacks, so each list is checked:
the code must be one wordfreq really has, the words must be in the language's script, and a
Latin-script list must not be the English one. Words espeak-ng reads in another language (it flags
them, e.g. `(en)`) or renders with phonemes we cannot write in IPA are dropped.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

from xlsr.data.synth.espeak import engine
from xlsr.data.synth.languages import LANGUAGES, Language
from xlsr.data.synth.phones import espeak_phones
from xlsr.errors import XlsrError

MIN_WORDS = 200  # a language with fewer usable words than this is refused


def in_script(word: str, scripts: tuple[str, ...]) -> bool:
    """True if `word` is letters (and marks) only, each letter from one of `scripts`."""
    for ch in word:
        cat = unicodedata.category(ch)
        if cat.startswith("M"):
            continue  # vowel signs and diacritics belong to the letter before them
        if not cat.startswith("L") or not unicodedata.name(ch, "").startswith(scripts):
            return False
    return bool(word)


def wordfreq_top(code: str, n: int) -> list[str]:
    """wordfreq's `n` most frequent words of `code`; XlsrError if wordfreq has no list of its own for it."""
    import wordfreq  # lazy: 0.4 s to import (measured with -X importtime), only where word lists are built

    if code not in wordfreq.available_languages():
        raise XlsrError(f"wordfreq has no word list for {code!r}")
    return wordfreq.top_n_list(code, n)


def _wordfreq_list(code: str, n: int) -> list[str]:
    return wordfreq_top(code, n)


@functools.cache
def word_list(code: str, n: int = 5000) -> tuple[tuple[str, ...], np.ndarray]:
    """Usable words of language `code` and their sampling probabilities (∝ sqrt of frequency)."""
    import wordfreq  # lazy: as in wordfreq_top

    lang: Language = LANGUAGES[code]
    top = _wordfreq_list(lang.wordfreq, n)
    scripted = [w for w in top if in_script(w, lang.scripts)]
    # Japanese kana-only words are a minority of the list; other languages should be nearly all in script.
    if len(scripted) < (0.1 if code == "ja" else 0.5) * len(top):
        raise XlsrError(f"{code}: only {len(scripted)} of wordfreq's {len(top)} words for "
                        f"{lang.wordfreq!r} are in the {'/'.join(lang.scripts)} script")
    if lang.scripts == ("LATIN",) and code != "en":
        english = set(wordfreq_top("en", 200))
        overlap = sum(w in english for w in top[:200]) / 200
        if overlap > 0.5:
            raise XlsrError(f"{code}: wordfreq's list for {lang.wordfreq!r} looks English ({overlap:.0%} overlap)")
    espeak = engine()
    espeak.set_voice(lang.voice)
    words = []
    for w in scripted:
        ipa = espeak.phonemize(w)
        if "(" in ipa:
            continue  # espeak switched language for this word
        try:
            if espeak_phones(ipa, espeak.phonemize(w, ipa=False) if lang.tones else None, lang):
                words.append(w)
        except XlsrError:
            continue
    if len(words) < MIN_WORDS:
        raise XlsrError(f"{code}: only {len(words)} usable words in wordfreq's {lang.wordfreq!r} list")
    # The raw frequency table: word_frequency() would tokenize, which needs jieba/MeCab for zh/ja.
    table = wordfreq.get_frequency_dict(lang.wordfreq)
    freq = np.array([table[w] for w in words]) ** 0.5
    return tuple(words), freq / freq.sum()


def sample_text(code: str, rng: np.random.Generator, num_words: int) -> str:
    """`num_words` words of language `code` drawn by (flattened) frequency, joined by spaces."""
    words, probs = word_list(code)
    return " ".join(words[i] for i in rng.choice(len(words), size=num_words, p=probs))
