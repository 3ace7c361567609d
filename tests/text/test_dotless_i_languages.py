"""Which languages lower-case I to ı: those whose Latin alphabet pairs I with ı and İ with i (Turkish, Azerbaijani,
Crimean Tatar, Gagauz; Tatar and Kazakh when the code names the Latin script), and no code naming another script."""

import unicodedata

import pytest

from xlsr.text.normalize import normalize_text


@pytest.mark.parametrize("raw, lang, want", [
    # Crimean Tatar and Gagauz: Latin alphabets modelled on Turkish's
    ("QIRIM TATAR TİLİ", "crh", "qırım tatar tili"),
    ("QIRIM TATAR TİLİ", "crh-Latn-UA", "qırım tatar tili"),
    ("YILDIZ İLK", "gag", "yıldız ilk"),
    ("YILDIZ İLK", "gag_MD", "yıldız ilk"),
    # Tatar (Zamanälif) and Kazakh (2021 alphabet) in Latin, by 639-1 or 639-3 code
    ("QIZ İSÄNME", "tt-Latn", "qız isänme"),
    ("QIZ İSÄNME", "tat-Latn-RU", "qız isänme"),
    ("QAZAQ TILI", "kk-Latn", "qazaq tılı"),
    ("QAZAQ TILI", "kaz_latn_KZ", "qazaq tılı"),
    ("IRMAK", "tr-Latn-TR", "ırmak"),
    ("IRMAK", "tr-x-abcd", "ırmak"),  # a private-use subtag of four letters names no script
])
def test_i_is_dotless_in_the_latin_alphabets_that_pair_it(raw, lang, want):
    assert normalize_text(raw, lang) == want
    assert normalize_text(want, lang) == want and unicodedata.is_normalized("NFC", want)


@pytest.mark.parametrize("raw, lang, want", [
    # Tatar and Kazakh are written in Cyrillic unless the code says Latin: a Latin I there is a foreign word's
    ("IT БИЗНЕС", "tt", "it бизнес"),
    ("IT БИЗНЕС", "kk-KZ", "it бизнес"),
    ("IT БИЗНЕС", "kaz", "it бизнес"),
    ("IT БИЗНЕС", "tt-Cyrl", "it бизнес"),
    # a code naming a script other than Latin, for a language whose Latin alphabet has ı
    ("IT БИЗНЕС", "az-Cyrl", "it бизнес"),
    ("IT БИЗНЕС", "crh-Cyrl-UA", "it бизнес"),
    ("IBM", "azb-Arab", "ibm"),
    # Karakalpak's Latin alphabet (since 2016) pairs I with i; Turkmen and Uzbek have no ı
    ("QARAQALPAQ TILI", "kaa", "qaraqalpaq tili"),
    ("TÜRKMEN DILI", "tk", "türkmen dili"),
    ("O'ZBEK TILI", "uz-Latn", "o'zbek tili"),
])
def test_i_stays_dotted_in_other_scripts_and_alphabets(raw, lang, want):
    assert normalize_text(raw, lang) == want
