"""espeak-ng's phoneme output -> IPA phones separated by spaces (no stress, no language flags)."""

from __future__ import annotations

import functools
import re
import unicodedata

from xlsr.data.synth.languages import Language
from xlsr.errors import XlsrError

_FLAG = re.compile(r"\([a-zA-Z-]+\)")  # language switch, e.g. (en)
_SPLIT = re.compile(r"[_\s|]+")
_STRESS_IPA = str.maketrans("", "", "ˈˌ")
_STRESS_ASCII = str.maketrans("", "", "',%=")
_TRAILING_DIGITS = re.compile(r"[0-9]+$")

# espeak's ASCII mnemonics that survive into its IPA output for some languages, longest first.
_MNEMONICS = [
    ("ts.h", "ʈʂʰ"), ("ts.", "ʈʂ"), ("s.", "ʂ"), ("z.", "ʐ"), ("r.", "ɽ"),  # retroflex (zh, hi, ur, bn)
    ("i.", "ɨ"), ("a.", "ɑ"),  # apical vowel (zh), back a (ar)
    ('u"', "ʉ"), ("ε", "ɛ"), ("?", "ʔ"),  # ru, da (Greek epsilon), da stød
    ("#", "\u0325"), ("^", "ʲ"), ("[", "\u032a"),  # voiceless (is), palatalised (ru, mk), dental (ky)
    (":", "ː"),
]
_ASPIRATED = re.compile(r"^(p|t|k|ts|tɕ|tʃ|ʈʂ|c|q)h$")  # espeak writes zh aspiration as a plain h
_DROPPED = str.maketrans("", "", "-`")  # espeak-internal variant markers (fr, ko, lv), no IPA meaning

_CHAO = dict(zip("12345", "˩˨˧˦˥"))
_VI_TONES = {"2": "˨˩", "3": "˧˥", "4": "˧˩˧", "5": "˧ˀ˥", "6": "˧ˀ˨"}  # 1 (ngang, level) is unmarked
_IPA_EXTRA = set("æçðøħŋœβθχᵻᵝⁿ")


@functools.lru_cache(maxsize=65536)
def is_ipa(phone: str) -> bool:
    """True if every character of `phone` is an IPA letter, modifier or diacritic."""
    for ch in unicodedata.normalize("NFD", phone):
        o = ord(ch)
        if not ("a" <= ch <= "z" or 0x250 <= o <= 0x2FF or 0x300 <= o <= 0x36F or ch in _IPA_EXTRA):
            return False
    return True


def _tokens(phonemes: str, stress) -> list[str]:
    return [t for t in _SPLIT.split(_FLAG.sub("", phonemes).translate(stress)) if t]


def _tone_letters(digits: str, lang: Language) -> str:
    if lang.tones == "chao":
        return "".join(_CHAO[d] for d in digits)
    return _VI_TONES.get(digits, "")


# A language has a few hundred distinct tokens, cleaned thousands of times (its word list checks 5000 words):
# memoized, espeak_phones over the word lists of 10 languages went from 1.5 to 0.6 CPU-s (measured).
@functools.lru_cache(maxsize=65536)
def _clean(token: str) -> tuple[str, ...]:
    for mnemonic, ipa in _MNEMONICS:
        token = token.replace(mnemonic, ipa)
    token = unicodedata.normalize("NFC", token.translate(_DROPPED))
    token = _ASPIRATED.sub(r"\1ʰ", token)
    if token.startswith("ʔ") and len(token) > 1:  # Danish stød is its own phone
        return ("ʔ", token[1:])
    return (token,) if token else ()


def espeak_phones(ipa: str, ascii_phonemes: str | None, lang: Language) -> list[str]:
    """IPA phones of one utterance from espeak's IPA output (and, for tone languages, its ASCII output).

    espeak's IPA output keeps only the first digit of a tone name (and prints 3 as ɜ), so the tone is
    read from the ASCII output, which has the same phonemes in the same order, and written as a separate
    tone-letter token after its vowel.
    """
    tokens = _tokens(ipa, _STRESS_IPA)
    tones: list[str] = [""] * len(tokens)
    if lang.tones:
        ascii_tokens = _tokens(ascii_phonemes or "", _STRESS_ASCII)
        if len(ascii_tokens) != len(tokens):
            raise XlsrError(f"{lang.code}: cannot align espeak-ng tones ({len(ascii_tokens)} ASCII phonemes "
                            f"vs {len(tokens)} IPA phonemes) in {ipa!r}")
        for i, a in enumerate(ascii_tokens):
            digits = _TRAILING_DIGITS.search(a)
            if digits:
                tokens[i] = tokens[i][:-1]  # the IPA token ends in the tone's first digit (3 shows as ɜ)
                tones[i] = _tone_letters(digits.group(), lang)
    phones: list[str] = []
    for token, tone in zip(tokens, tones):
        for phone in _clean(token):
            if not is_ipa(phone):
                raise XlsrError(f"{lang.code}: espeak-ng emitted a non-IPA phone {phone!r} in {ipa!r}")
            phones.append(phone)
        if tone:
            phones.append(tone)
    return phones
