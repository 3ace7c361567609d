"""normalize_text's apostrophes beside invisible characters and beside other apostrophes: the text it writes is the
text that normalising again leaves as it is (`xlsr data normalize-text` writes it once, `xlsr evaluate
--normalize-text` normalises that reference again), and an apostrophe between letters is U+0027."""

import pytest

from xlsr.text.normalize import normalize_text


@pytest.mark.parametrize("raw, want", [
    ("don\u00adʼt", "don't"),  # a soft hyphen before ʼ (U+02BC): an apostrophe between letters once it is gone
    ("l\u200b'uomo", "l'uomo"),  # a zero-width space beside the apostrophe
    ("l'\ufeffuomo", "l'uomo"),  # a byte-order mark
    ("aʼ\ufeffI", "a'i"),
    ("мʼʼясо", "мʼʼясо"),  # two ʼ: neither stands between letters (ʼ is a letter to Unicode, ' is not)
    ("a'ʼb", "a ʼb"),  # ... nor ' beside ʼ
    ("Eı\u055eʼΔ", "eı ʼδ"),  # Armenian's question mark beside ʼ, not between two letters
])
def test_apostrophes_beside_invisible_characters_and_apostrophes(raw, want):
    assert normalize_text(raw) == want
    assert normalize_text(want) == want


@pytest.mark.parametrize("raw", ["aʼʼb", "a'ʼb", "aʼ'b", "ʼʼ\ufeffё?e-ʼ", "İﬁé?ςʼ\ufeffʼ", "E\u00adʼЁ\u055eΔ",
                                 "\ufeff東\u055eʼא'Éı", "ב。e\u00adçʼ\u055eç"])
@pytest.mark.parametrize("lang", [None, "tr", "el"])
def test_normalising_twice_changes_nothing(raw, lang):
    once = normalize_text(raw, lang)
    assert normalize_text(once, lang) == once
