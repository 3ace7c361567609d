"""Transcript normalisation for character labels, and the vocabulary signs that a corpus was not normalised.

A character CTC model learns one output per symbol. Raw transcripts (Common Voice's `sentence`, say) carry
capitals beside their lower-case twins and punctuation no one pronounces: rare outputs the model must learn from
few frames, and reference symbols that decide CER and WER without being heard. `normalize_text` is the usual
cleaning of speech recognition recipes, written out so that training and scoring apply the same one:

1. Unicode NFC (a letter with its accent is one code point however it was typed);
2. lower case by Unicode's rules (`str.lower`; Turkish İ becomes i and a combining dot);
3. punctuation and symbols (Unicode categories P* and S*) become spaces, except an apostrophe between two
   letters (`l'uomo`, `don't`), which is kept as U+0027 whatever apostrophe was typed (’, ʼ, and the ‘ and `
   that keyboards put in its place);
4. invisible format characters (category Cf: zero-width space, byte-order mark, soft hyphen, direction marks)
   are deleted, except the zero-width non-joiner and joiner, which spell words in Persian and Indic scripts;
5. runs of whitespace become one space, none at either end.

Digits, letters of every script and combining marks are kept; numbers are not spelled out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# ASCII, right single quotation mark, modifier letter apostrophe; left single quotation mark and grave accent, typed
# for it (l`uomo)
APOSTROPHES = "'\u2019\u02bc\u2018`"
JOINERS = "\u200c\u200d"  # zero-width non-joiner and joiner: part of the spelling in Persian, Hindi, Malayalam, ...
# Punctuation written inside a word. Armenian's emphasis, exclamation and question marks sit on the stressed vowel
# (ինչո՞ւ is one word): dropped there, as the same marks are at a word's end. Hebrew's geresh and gershayim spell
# words and abbreviations (ג׳ירפה, צה״ל): kept between letters.
DROPPED_IN_WORD = "\u055b\u055c\u055e"
KEPT_IN_WORD = "\u05f3\u05f4"


def normalize_text(text: str) -> str:
    """`text` lower-cased, without punctuation or symbols, NFC, single spaces (the module's rules)."""
    text = unicodedata.normalize("NFC", text).lower()
    out = []
    for i, ch in enumerate(text):
        inside = 0 < i < len(text) - 1 and _in_word(text[i - 1]) and _in_word(text[i + 1])
        if ch in APOSTROPHES and inside:
            out.append("'")
        elif ch in KEPT_IN_WORD and inside:
            out.append(ch)
        elif ch in DROPPED_IN_WORD and inside:
            continue
        elif unicodedata.category(ch)[0] in "PS":
            out.append(" ")
        elif unicodedata.category(ch) == "Cf" and ch not in JOINERS:
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def _in_word(ch: str) -> bool:
    """A letter, or a mark written on one (a Devanagari vowel sign, an accent with no precomposed form)."""
    return ch.isalpha() or unicodedata.category(ch)[0] == "M"


def is_punctuation(symbol: str) -> bool:
    """Whether a one-character symbol is punctuation or a symbol (what normalize_text removes; its apostrophe aside)."""
    return len(symbol) == 1 and symbol != "'" and unicodedata.category(symbol)[0] in "PS"


def unnormalized_signs(symbols: Iterable[str]) -> str | None:
    """What in a character vocabulary says its transcripts were not normalised (capitals beside their lower-case
    twins, punctuation), as part of a sentence; None when nothing does."""
    symbols = {s for s in symbols if len(s) == 1}
    twins = sorted(s for s in symbols if s != s.lower() and s.lower() in symbols)
    marks = sorted(s for s in symbols if is_punctuation(s) and s != "|")
    # a combining mark of its own beside a letter that holds it precomposed: one letter spelled two ways (NFC and NFD)
    mixed = sorted(m for m in symbols if unicodedata.category(m) == "Mn" and any(
        len(composed := unicodedata.normalize("NFC", b + m)) == 1 and composed in symbols for b in symbols if b.isalpha()))
    parts = []
    if mixed:
        parts.append(f"{len(mixed)} combining mark(s) that its letters also hold precomposed "
                     f"({' '.join(repr(m) for m in mixed[:6])}): transcripts mixing NFC and NFD spellings")
    if twins:
        parts.append(f"{len(twins)} capital(s) beside their lower-case letters ({', '.join(twins[:6])})")
    if marks:
        parts.append(f"{len(marks)} punctuation mark(s) or symbol(s) ({' '.join(marks[:8])})")
    return " and ".join(parts) or None
