import json

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.manifest import read_manifest
from xlsr.data.synth import LANGUAGES, synthesize_corpus
from xlsr.data.synth.languages import Language, parse_languages
from xlsr.data.synth.phones import espeak_phones, is_ipa
from xlsr.errors import XlsrError


def test_language_table_spans_families():
    assert len(LANGUAGES) >= 30
    families = {lang.family for lang in LANGUAGES.values()}
    assert {"Romance", "Germanic", "Slavic", "Uralic", "Turkic", "Indo-Aryan", "Semitic"} <= families
    with pytest.raises(XlsrError, match="unknown language code 'xx'"):
        parse_languages("es,xx")


def test_corpus_layout_labels_and_disjoint_speakers(corpus):
    out, summary = corpus
    for lang in ("es", "de", "zh"):
        splits = {s: read_manifest(out / lang / f"{s}.jsonl") for s in ("train", "dev", "test")}
        assert [len(v) for v in splits.values()] == [4, 1, 1]
        speakers = [{u.speaker for u in v} for v in splits.values()]
        assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
        for u in splits["train"]:
            x, rate = sf.read(u.audio)
            assert rate == 16000 and x.ndim == 1 and len(x) == u.num_samples and u.audio.endswith(".flac")
            assert u.lang == lang and u.text and u.phones
            phones = u.phones.split()
            assert all(is_ipa(p) for p in phones)
            assert not any(c in u.phones for c in "ˈˌ()")
    assert summary.audio_seconds > 0 and summary.realtime_per_core > 0
    record = json.loads((out / "synth.json").read_text())
    assert record["languages"]["zh"]["family"] == "Sino-Tibetan"


def test_same_seed_same_corpus_regardless_of_workers(tmp_path, corpus):
    out, _ = corpus
    synthesize_corpus(tmp_path, ["es", "de", "zh"], 6, seed=3, workers=2, speakers_per_lang=3,
                      words_per_utt=(2, 4), show_progress=False)
    for lang in ("es", "zh"):
        a = (out / lang / "train.jsonl").read_text()
        b = (tmp_path / lang / "train.jsonl").read_text()
        assert a == b
        for u, v in zip(read_manifest(out / lang / "train.jsonl"), read_manifest(tmp_path / lang / "train.jsonl")):
            assert np.array_equal(sf.read(u.audio)[0], sf.read(v.audio)[0])


def test_noise_changes_audio_not_labels(tmp_path):
    clean = synthesize_corpus(tmp_path / "c", "it", 3, seed=0, speakers_per_lang=3, words_per_utt=(2, 3),
                              show_progress=False)
    synthesize_corpus(tmp_path / "n", "it", 3, seed=0, noise=10.0, speakers_per_lang=3, words_per_utt=(2, 3),
                      show_progress=False)
    u = read_manifest(tmp_path / "c" / "it" / "train.jsonl")[0]
    v = read_manifest(tmp_path / "n" / "it" / "train.jsonl")[0]
    assert (u.text, u.phones) == (v.text, v.phones)
    x, y = sf.read(u.audio)[0], sf.read(v.audio)[0]
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
    assert 3 < snr < 17
    assert clean.utterances["it"] == {"train": 1, "dev": 1, "test": 1}


def test_phone_cleanup_maps_mnemonics_and_reads_tones():
    da = LANGUAGES["da"]
    assert espeak_phones("(en)h_ˈɛ_l_oʊ(da) ʃ_ˈi:", None, da) == ["h", "ɛ", "l", "oʊ", "ʃ", "iː"]
    plain = Language("x", "x", "x", "x", "x", ("LATIN",))
    assert espeak_phones("ts._ˈi. d[_a r._a ?ɑ ε r#", None, plain) == ["ʈʂ", "ɨ", "d̪", "a", "ɽ", "a", "ʔ", "ɑ",
                                                                       "ɛ", "r̥"]
    with pytest.raises(XlsrError, match="non-IPA phone '5'"):
        espeak_phones("m_ɑ_5", None, da)
    zh = LANGUAGES["zh"]
    # espeak's IPA output keeps the first tone digit (3 printed as ɜ); the ASCII output has all of it
    assert espeak_phones("m_ˈɑɜ_ tsh_ˈɑ2", "m_'A35__| tsh_'A214", zh) == ["m", "ɑ", "˧˥", "tsʰ", "ɑ", "˨˩˦"]
    vi = LANGUAGES["vi"]
    assert espeak_phones("m_ˈaː6", "m_'a:6", vi) == ["m", "aː", "˧ˀ˨"]
    with pytest.raises(XlsrError, match="cannot align"):
        espeak_phones("m_ˈaː6", "m_'a:6_x", vi)


def test_word_list_refuses_a_fallback_language(monkeypatch):
    from xlsr.data.synth import text

    monkeypatch.setitem(LANGUAGES, "zz", Language("zz", "Fake", "ru", "ky", "Turkic", ("CYRILLIC",)))
    with pytest.raises(XlsrError, match="wordfreq has no word list for 'ky'"):
        text.word_list("zz")
    # a list that is really English, under a Latin-script language
    monkeypatch.setitem(LANGUAGES, "zy", Language("zy", "Fake", "es", "en", "Romance", ("LATIN",)))
    with pytest.raises(XlsrError, match="looks English"):
        text.word_list("zy")
    # words in the wrong script
    monkeypatch.setitem(LANGUAGES, "zx", Language("zx", "Fake", "ru", "ru", "Slavic", ("GREEK",)))
    with pytest.raises(XlsrError, match="GREEK script"):
        text.word_list("zx")


def test_out_that_is_a_file_is_refused_before_synthesis(tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    with pytest.raises(XlsrError, match="notes.txt: exists and is not a folder"):
        synthesize_corpus(taken, "es", 3, speakers_per_lang=3, words_per_utt=(2, 3), show_progress=False)
    assert taken.read_text() == "keep me"
