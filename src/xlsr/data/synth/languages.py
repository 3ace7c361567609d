"""The languages the synthesizer speaks: espeak-ng voice, wordfreq list, family and script."""

from __future__ import annotations

from dataclasses import dataclass

from xlsr.errors import XlsrError


@dataclass(frozen=True)
class Language:
    """One synthesizable language."""

    code: str  # our code, used for folder names and manifests
    name: str
    voice: str  # espeak-ng voice name
    wordfreq: str  # wordfreq language code (must be one wordfreq really has a list for)
    family: str
    scripts: tuple[str, ...]  # Unicode character-name prefixes every word's letters must start with
    tones: str | None = None  # "chao" (Mandarin: espeak names tones by Chao digits) or "vi"


_LATIN = ("LATIN",)
_CYRILLIC = ("CYRILLIC",)
_ARABIC = ("ARABIC",)

LANGUAGES: dict[str, Language] = {lang.code: lang for lang in [
    Language("es", "Spanish", "es", "es", "Romance", _LATIN),
    Language("fr", "French", "fr", "fr", "Romance", _LATIN),
    Language("it", "Italian", "it", "it", "Romance", _LATIN),
    Language("pt", "Portuguese", "pt", "pt", "Romance", _LATIN),
    Language("ca", "Catalan", "ca", "ca", "Romance", _LATIN),
    Language("ro", "Romanian", "ro", "ro", "Romance", _LATIN),
    Language("en", "English", "en-us", "en", "Germanic", _LATIN),
    Language("de", "German", "de", "de", "Germanic", _LATIN),
    Language("nl", "Dutch", "nl", "nl", "Germanic", _LATIN),
    Language("sv", "Swedish", "sv", "sv", "Germanic", _LATIN),
    Language("da", "Danish", "da", "da", "Germanic", _LATIN),
    Language("nb", "Norwegian Bokmål", "nb", "nb", "Germanic", _LATIN),
    Language("is", "Icelandic", "is", "is", "Germanic", _LATIN),
    Language("ru", "Russian", "ru", "ru", "Slavic", _CYRILLIC),
    Language("uk", "Ukrainian", "uk", "uk", "Slavic", _CYRILLIC),
    Language("bg", "Bulgarian", "bg", "bg", "Slavic", _CYRILLIC),
    Language("mk", "Macedonian", "mk", "mk", "Slavic", _CYRILLIC),
    Language("pl", "Polish", "pl", "pl", "Slavic", _LATIN),
    Language("cs", "Czech", "cs", "cs", "Slavic", _LATIN),
    Language("sk", "Slovak", "sk", "sk", "Slavic", _LATIN),
    Language("sl", "Slovenian", "sl", "sl", "Slavic", _LATIN),
    Language("hr", "Croatian", "hr", "sh", "Slavic", _LATIN),
    Language("lv", "Latvian", "lv", "lv", "Baltic", _LATIN),
    Language("lt", "Lithuanian", "lt", "lt", "Baltic", _LATIN),
    Language("fi", "Finnish", "fi", "fi", "Uralic", _LATIN),
    Language("hu", "Hungarian", "hu", "hu", "Uralic", _LATIN),
    Language("tr", "Turkish", "tr", "tr", "Turkic", _LATIN),
    Language("hi", "Hindi", "hi", "hi", "Indo-Aryan", ("DEVANAGARI",)),
    Language("ur", "Urdu", "ur", "ur", "Indo-Aryan", _ARABIC),
    Language("bn", "Bengali", "bn", "bn", "Indo-Aryan", ("BENGALI",)),
    Language("fa", "Persian", "fa", "fa", "Iranian", _ARABIC),
    Language("el", "Greek", "el", "el", "Hellenic", ("GREEK",)),
    Language("ar", "Arabic", "ar", "ar", "Semitic", _ARABIC),
    Language("he", "Hebrew", "he", "he", "Semitic", ("HEBREW",)),
    Language("ta", "Tamil", "ta", "ta", "Dravidian", ("TAMIL",)),
    Language("id", "Indonesian", "id", "id", "Austronesian", _LATIN),
    Language("ms", "Malay", "ms", "ms", "Austronesian", _LATIN),
    Language("zh", "Mandarin Chinese", "cmn", "zh", "Sino-Tibetan", ("CJK UNIFIED",), tones="chao"),
    Language("ja", "Japanese", "ja", "ja", "Japonic", ("HIRAGANA", "KATAKANA")),  # espeak reads kana only
    Language("ko", "Korean", "ko", "ko", "Koreanic", ("HANGUL",)),
    Language("vi", "Vietnamese", "vi", "vi", "Austroasiatic", _LATIN, tones="vi"),
]}


def get_language(code: str, field: str = "") -> Language:
    """The table entry for `code`; XlsrError listing the known codes otherwise (naming `field`, the option or
    setting that gave the code, when there is one)."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise XlsrError(f"{field + ': ' if field else ''}unknown language code {code!r}; known: "
                        f"{','.join(LANGUAGES)}") from None


def parse_languages(spec: str) -> list[Language]:
    """`es,it,de` (or `all`) -> table entries, in the given order, without duplicates."""
    if spec.strip() == "all":
        return list(LANGUAGES.values())
    codes = [c.strip() for c in spec.split(",") if c.strip()]
    if not codes:
        raise XlsrError("--langs: no language given")
    return [get_language(c, "--langs") for c in dict.fromkeys(codes)]
