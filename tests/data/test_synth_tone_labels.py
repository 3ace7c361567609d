"""Tone labels follow the spelling: Vietnamese diacritics and Mandarin syllables get their tones' Chao letters."""

import pytest

from xlsr.data.synth.espeak import engine
from xlsr.data.synth.languages import LANGUAGES
from xlsr.data.synth.phones import espeak_phones


def _phones(lang, text):
    espeak = engine()
    espeak.set_voice(LANGUAGES[lang].voice)
    return espeak_phones(espeak.phonemize(text), espeak.phonemize(text, ipa=False), LANGUAGES[lang])


def test_vietnamese_tones_are_those_the_diacritics_write():
    # ngang (level, unmarked), huyền (low falling 21), sắc (rising 35), hỏi (dipping 313), ngã (broken rising 3ʔ5),
    # nặng (broken low 3ʔ2)
    assert _phones("vi", "ba bà bá bả bã bạ") == [
        "b", "aː", "b", "aː", "˨˩", "b", "aː", "˧˥", "b", "aː", "˧˩˧", "b", "aː", "˧ˀ˥", "b", "aː", "˧ˀ˨"]


def test_mandarin_tones_are_those_of_the_syllables():
    # 妈 mā (55), 麻 má (35), 马 mǎ (214), 骂 mà (51)
    assert _phones("zh", "妈 麻 马 骂") == ["m", "ɑ", "˥˥", "m", "ɑ", "˧˥", "m", "ɑ", "˨˩˦", "m", "ɑ", "˥˩"]


@pytest.mark.parametrize("ipa, phones", [("ʔ", ["ʔ"]), ("?", ["ʔ"]), ("h_ˈʔu_n", ["h", "ʔ", "u", "n"])])
def test_danish_stod_is_one_phone_alone_or_before_its_vowel(ipa, phones):
    assert espeak_phones(ipa, None, LANGUAGES["da"]) == phones
