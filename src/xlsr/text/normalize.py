"""Transcript normalisation for character labels, and the vocabulary signs that a corpus was not normalised.

A character CTC model learns one output per symbol. Raw transcripts (Common Voice's `sentence`, say) carry
capitals beside their lower-case twins and punctuation no one pronounces: rare outputs the model must learn from
few frames, and reference symbols that decide CER and WER without being heard. `normalize_text` is the usual
cleaning of speech recognition recipes, written out so that training and scoring apply the same one:

1. Unicode NFC (a letter with its accent is one code point however it was typed), before the steps below and
   again after them (deleting an invisible character can bring a letter and its accent together);
2. invisible format characters (category Cf: zero-width space, byte-order mark, soft hyphen, direction marks)
   are deleted, except the zero-width non-joiner and joiner, which spell words in Persian and Indic scripts;
3. punctuation and symbols (Unicode categories P* and S*) become spaces, except an apostrophe between two
   letters (`l'uomo`, `don't`, judged once the invisible characters are gone), which is kept as U+0027 whatever
   apostrophe was typed (’, ʼ, and the ‘ and ` that keyboards put in its place); ʼ elsewhere is a letter
   (Unicode's category Lm) and stays;
4. lower case by Unicode's rules (`str.lower`), once punctuation is spaces, so that Greek Σ ends a word as ς
   whatever mark followed it; İ becomes i (`str.lower` gives i and a combining dot above, a spelling of
   İstanbul no lower-case transcript has). For the utterance's language (`lang`, a manifest's code) I becomes ı
   where the language's Latin alphabet pairs I with ı and İ with i, as its transcripts write it (IRMAK is ırmak):
   Turkish and Azerbaijani (Unicode's casing rules for the two, SpecialCasing.txt), Crimean Tatar and Gagauz, and
   Tatar and Kazakh when the code names the Latin script (`tt-Latn`, `kk-Latn`: both are written in Cyrillic
   otherwise); a code naming another script (`az-Cyrl`) keeps I as i. In every other language, and when no
   language is given, I becomes i;
5. runs of whitespace become one space, none at either end.

Digits, letters of every script and combining marks are kept; numbers are not spelled out. The result is NFC,
and normalising it again changes nothing.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
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
DOTTED_CAPITAL_I = "\u0130"  # İ: Turkish, Azerbaijani, ...; lower case i (str.lower adds a combining dot above)
# Languages whose Latin alphabet has I as the capital of dotless ı and İ as that of i, by the first subtag of a
# manifest's language code: ISO 639-1 as xlsr writes codes (tr, az-Latn), 639-3 as a hand-made manifest may.
# Turkish (tr, tur) and Azerbaijani (az, aze; North and South, azj and azb) are the two of Unicode's
# SpecialCasing.txt. Crimean Tatar (crh) and Gagauz (gag), 639-3 codes only, write the same pair in their Latin
# alphabets (glibc's crh_UA locale takes tr_TR's casing); a Crimean Tatar text in Cyrillic has no Latin I to
# lower-case. Not Karakalpak (kaa): its Latin alphabet has had I as the capital of i since 2016.
DOTLESS_I_LANGUAGES = frozenset({"tr", "tur", "az", "aze", "azj", "azb", "crh", "gag"})
# ... and those written in Cyrillic unless the code names the Latin script (tt-Latn, kk-Latn): Tatar's Latin alphabet
# (Zamanälif; glibc's tt_RU@iqtelif locale takes tr_TR's casing) and Kazakh's of 2021. A Latin I in a Cyrillic
# transcript is a foreign word's (IT), lower-cased to i.
DOTLESS_I_IN_LATIN = frozenset({"tt", "tat", "kk", "kaz"})


def normalize_text(text: str, lang: str | None = None) -> str:
    """`text` lower-cased (by the casing of `lang`, the utterance's language code, when it has its own),
    without punctuation or symbols, NFC, single spaces (the module's rules)."""
    # invisible characters go first, so that an apostrophe is judged by the letters it stands between once they are
    # gone: "don\u00adʼt" is "don't", as normalising "donʼt" gives
    text = unicodedata.normalize("NFC", "".join(ch for ch in text if not _invisible(ch)))
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
        else:
            out.append(ch)
    # lower-cased once the punctuation is spaces: str.lower makes Σ final (ς) by the letters around it, skipping the
    # marks Unicode calls case-ignorable, a full stop among them ("ΟΔΟΣ.ΑΝ" gave "οδοσ αν")
    text = _lower("".join(out), lang)
    return " ".join(unicodedata.normalize("NFC", text).split())


def _lower(text: str, lang: str | None = None) -> str:
    """`text` in lower case by Unicode's rules, but İ is i (not i and a combining dot above), and I is ı in the
    languages of `dotless_i_language`."""
    if dotless_i_language(lang):
        text = text.replace("I", "\u0131")
    return text.replace(DOTTED_CAPITAL_I, "i").lower()


def dotless_i_language(lang: str | None) -> bool:
    """Whether a language code (`tr`, `tr-TR`, `az_AZ`, `tur`, `kk-Latn`) is of a language, in its script, whose I
    lower-cases to ı."""
    if lang is None:
        return False
    language, *rest = lang.replace("_", "-").lower().split("-")
    # BCP 47: a script subtag is four letters right after the language (tr-x-abcd names none)
    script = rest[0] if rest and len(rest[0]) == 4 and rest[0].isalpha() else None
    if script is not None and script != "latn":
        return False
    return language in DOTLESS_I_LANGUAGES or (language in DOTLESS_I_IN_LATIN and script == "latn")


def _invisible(ch: str) -> bool:
    """An invisible format character that normalize_text deletes (category Cf, the joiners aside)."""
    return unicodedata.category(ch) == "Cf" and ch not in JOINERS


def _in_word(ch: str) -> bool:
    """A letter, or a mark written on one (a Devanagari vowel sign, an accent with no precomposed form); not an
    apostrophe, though ʼ (U+02BC) is a letter to Unicode: normalize_text writes one between letters as ', which is
    not, so two in a row (aʼʼb) would be two apostrophes kept inside a word that normalising again splits."""
    return ch not in APOSTROPHES and (ch.isalpha() or unicodedata.category(ch)[0] == "M")


def _hangul_jamo_after_initial(ch: str) -> bool:
    """A Hangul vowel or final consonant jamo (conjoining): NFC puts it inside a syllable after an initial."""
    return "\u1160" <= ch <= "\u11ff" or "\ud7b0" <= ch <= "\ud7ff"


def is_punctuation(symbol: str) -> bool:
    """Whether a one-character symbol is punctuation or a symbol (what normalize_text removes; its apostrophe aside)."""
    return len(symbol) == 1 and symbol != "'" and unicodedata.category(symbol)[0] in "PS"


def unnormalized_signs(symbols: Iterable[str], texts: Iterable[str] | None = None, *,
                       respelled: set[str] | None = None) -> str | None:
    """What in a character vocabulary says its transcripts were not normalised (capitals beside their lower-case
    twins, punctuation, invisible format characters, letters spelled both NFC and NFD), as part of a sentence; None
    when nothing does. `texts`: the labels the vocabulary is for, read only when it holds a loose combining mark
    beside a letter holding the mark precomposed, and until each such mark is decided. Without them, `respelled`:
    the characters NFC respells somewhere in those labels (the union of their `nfc_respelled`, as a shard index
    records it). Neither: the vocabulary alone decides (a mark may then be named that NFC transcripts hold loose, as
    Yoruba's acute on ẹ)."""
    symbols = {s for s in symbols if len(s) == 1}
    twins = sorted(s for s in symbols if (low := _lower(s)) != s and low in symbols)
    marks = sorted(s for s in symbols if is_punctuation(s) and s != "|")
    hidden = sorted(s for s in symbols if _invisible(s))
    # a combining mark (or Hangul vowel or final jamo) of its own beside a letter that holds it precomposed: letters
    # spelled two ways (NFC and NFD). Vietnamese ế holds two marks; without ê or é in the vocabulary, pairing each
    # mark with one letter found neither.
    held = {c for s in symbols if (d := unicodedata.normalize("NFD", s)) != s for c in d}
    loose = {m for m in symbols & held if unicodedata.category(m) == "Mn" or _hangul_jamo_after_initial(m)}
    # ... but NFC keeps a mark loose where no letter holds it with the letter's other marks (Yoruba ẹ́ is ẹ and an
    # acute beside é, both NFC): only a label that NFC spells otherwise shows two spellings
    if texts is not None:
        mixed = sorted(respelled_by_nfc(loose, texts))
    else:
        mixed = sorted(loose if respelled is None else loose & respelled)
    parts = []
    if mixed:
        parts.append(f"{len(mixed)} combining mark(s) or jamo that its letters also hold precomposed "
                     f"({' '.join(repr(m) for m in mixed[:6])}): transcripts mixing NFC and NFD spellings")
    if twins:
        parts.append(f"{len(twins)} capital(s) beside their lower-case letters ({', '.join(twins[:6])})")
    if marks:
        parts.append(f"{len(marks)} punctuation mark(s) or symbol(s) ({' '.join(marks[:8])})")
    if hidden:
        parts.append(f"{len(hidden)} invisible format character(s) ({' '.join(f'U+{ord(c):04X}' for c in hidden[:6])})")
    return " and ".join(parts) or None


def respelled_by_nfc(chars: set[str], texts: Iterable[str]) -> set[str]:
    """Those of `chars` that NFC adds to or takes from some text of `texts` (a letter spelled decomposed where NFC
    composes it, or composed where NFC decomposes it); the texts are read until all of `chars` are found."""
    found: set[str] = set()
    if not chars:
        return found
    for text in texts:
        found |= chars & nfc_respelled(text)
        if found == chars:
            break
    return found


def nfc_respelled(text: str) -> set[str]:
    """The characters whose count in `text` NFC changes (a loose mark it composes and the letter it makes, a
    precomposed letter it decomposes and its parts); empty for an NFC text."""
    if unicodedata.is_normalized("NFC", text):  # most labels: no counting
        return set()
    before, after = Counter(text), Counter(unicodedata.normalize("NFC", text))
    return {c for c in before.keys() | after.keys() if before[c] != after[c]}
