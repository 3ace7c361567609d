import json

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.augment import augmented_length, parse_augment
from xlsr.data.manifest import read_manifest
from xlsr.data.synth import LANGUAGES, synthesize_corpus
from xlsr.data.synth.corpus import plan_corpus, split_speakers
from xlsr.data.synth.languages import Language, parse_languages
from xlsr.data.synth.phones import espeak_phones, is_ipa
from xlsr.data.synth.speakers import make_speakers, voice_variants
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


def test_noise_changes_audio_not_labels(tmp_path):
    clean = synthesize_corpus(tmp_path / "c", "it", 3, seed=0, speakers_per_lang=3, words_per_utt=(2, 3),
                              augment="none", show_progress=False)
    synthesize_corpus(tmp_path / "n", "it", 3, seed=0, noise=10.0, speakers_per_lang=3, words_per_utt=(2, 3),
                      augment="none", show_progress=False)
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


def test_a_negative_seed_is_one_line_before_anything_is_written(tmp_path):
    with pytest.raises(XlsrError, match="--seed: a whole number 0 or more, got -1"):
        synthesize_corpus(tmp_path / "out", "es", 3, seed=-1, speakers_per_lang=3, show_progress=False)
    assert not (tmp_path / "out").exists()


def test_realistic_corpus_effects_keep_labels_and_only_speed_changes_length(tmp_path):
    """The default corpus against the same corpus without effects: same texts, phones and speakers; the
    speed-perturbed utterances have the drawn lengths, the others the clean length with other samples."""
    kw = dict(seed=2, speakers_per_lang=6, words_per_utt=(2, 3), show_progress=False)
    real = synthesize_corpus(tmp_path / "r", ["it", "de"], 12, augment="speed=0.5,reverb=0.5,noise=0.7,bandlimit=0.3",
                             **kw)
    synthesize_corpus(tmp_path / "c", ["it", "de"], 12, augment="none", **kw)
    spec = parse_augment("speed=0.5,reverb=0.5,noise=0.7,bandlimit=0.3")
    plans = {p.id: p for p in plan_corpus([LANGUAGES["it"], LANGUAGES["de"]], 12, 2, speakers_per_lang=6,
                                          words_per_utt=(2, 3), voices="varied", augment=spec)}
    changed = 0
    for lang in ("it", "de"):
        for split in ("train", "dev", "test"):
            for u, v in zip(read_manifest(tmp_path / "r" / lang / f"{split}.jsonl"),
                            read_manifest(tmp_path / "c" / lang / f"{split}.jsonl")):
                assert (u.id, u.text, u.phones, u.speaker) == (v.id, v.text, v.phones, v.speaker)
                draw = plans[u.id].effects
                assert u.num_samples == augmented_length(v.num_samples, draw)
                if draw is not None:
                    changed += 1
                    x, y = sf.read(u.audio)[0], sf.read(v.audio)[0]
                    assert len(x) != len(y) or not np.allclose(x, y, atol=1e-3)
    assert changed == 24 - real.effects["none"] and 0 < real.effects["none"] < 24
    assert set(real.effects) == {"none", "speed", "reverb", "noise", "bandlimit"}
    record = json.loads((tmp_path / "r" / "synth.json").read_text())
    assert record["augment"] == str(spec) and record["voices"] == "varied"
    assert record["summary"]["effects"] == real.effects


def test_many_speakers_disjoint_across_splits_and_counted(tmp_path):
    langs = [LANGUAGES["es"], LANGUAGES["ru"]]
    plans = plan_corpus(langs, 100, 5, speakers_per_lang=40, voices="varied")
    by_split = {}
    for p in plans:
        by_split.setdefault(p.split, set()).add(p.speaker.id)
    assert {k: len(v) for k, v in by_split.items()} == {"train": 64, "dev": 8, "test": 8}
    assert not (by_split["train"] & by_split["dev"] or by_split["train"] & by_split["test"]
                or by_split["dev"] & by_split["test"])
    speakers = make_speakers(LANGUAGES["es"], 40, np.random.default_rng(0), voices="varied")
    assert len({s.voice for s in speakers}) == 40  # 120 voices: no two of 40 speakers share one
    assert len({s.voice.split("_t")[1][:3] for s in speakers}) == 5  # every vocal-tract length
    assert {s.voice.endswith("_k") for s in speakers} == {True, False}  # both synthesizers
    assert [len(v) for v in split_speakers(speakers).values()] == [32, 4, 4]
    summary = synthesize_corpus(tmp_path, "es", 10, seed=1, speakers_per_lang=10, words_per_utt=(2, 3),
                                show_progress=False)
    assert summary.speaker_counts() == {"train": 8, "dev": 1, "test": 1}


def test_varied_voices_are_distinct_espeak_voices():
    """Every voice of the varied set loads, and the vocal-tract scale moves the spectrum."""
    from xlsr.data.synth.speakers import Speaker, speak

    assert len(voice_variants("varied")) == 120 and len(voice_variants("basic")) == 12
    centroids = []
    for tract in ("088", "100", "112"):
        x = speak(Speaker("it-x", f"it+xlsr_m3_t{tract}", 50, 50, 170), "una casa grande con finestre", seed=1)
        power = np.abs(np.fft.rfft(x)) ** 2
        centroids.append(float((power * np.fft.rfftfreq(len(x), 1 / 16000)).sum() / power.sum()))
    assert centroids[0] < centroids[1] < centroids[2]
    with pytest.raises(XlsrError, match="--voices: expected one of basic, varied, got 'many'"):
        voice_variants("many")


def test_basic_speakers_are_those_of_earlier_versions():
    """The clean corpus stays reproducible: the basic draw is the one earlier versions made (values recorded
    from the code before the varied voices)."""
    speakers = make_speakers(LANGUAGES["it"], 4, np.random.default_rng(11))
    assert [(s.voice, s.pitch, s.pitch_range, s.rate) for s in speakers] == [
        ("it+xlsr_m3", 56, 74, 162), ("it+xlsr_f4", 32, 56, 167), ("it+xlsr_f2", 58, 80, 156),
        ("it+xlsr_m2", 68, 37, 161)]


def test_bad_augment_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(XlsrError, match="augment 'noise=2': the share of utterances must be in"):
        synthesize_corpus(tmp_path / "out", "es", 3, augment="noise=2", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_synth_json_describes_every_call_into_the_folder(tmp_path):
    """Two calls into one folder (the demo's target, then its other languages): synth.json lists both calls'
    languages, each with its own options, call and counts, and stays what the release build reads."""
    import shutil
    from dataclasses import replace

    from xlsr.released.build import corpus_matches
    from xlsr.released.recipes import RELEASE_SYNTH, RELEASES

    kw = dict(words_per_utt=(1, 2), show_progress=False, **RELEASE_SYNTH)
    out = tmp_path / "corpus"
    first = synthesize_corpus(out, ["it"], 4, seed=7, **kw)
    record = json.loads((out / "synth.json").read_text())
    # one call: the top level as before, so the release build's reader still recognises its corpus
    recipe = replace(next(iter(RELEASES.values())), langs=("it",), utts_per_lang=4, synth_seed=7)
    assert record["utts_per_lang"] == 4 and list(record["languages"]) == ["it"] and corpus_matches(out, recipe)
    assert record["summary"]["effects"] == first.effects and record["summary"]["seconds"] == first.seconds

    second = synthesize_corpus(out, ["es", "pt"], 3, seed=7, **kw)
    record = json.loads((out / "synth.json").read_text())
    langs = record["languages"]
    assert list(langs) == ["it", "es", "pt"] == list(record["summary"]["utterances"])
    assert {code: entry["utts_per_lang"] for code, entry in langs.items()} == {"it": 4, "es": 3, "pt": 3}
    assert record["utts_per_lang"] is None and record["seed"] == 7  # differs per language / shared
    assert [langs[code]["synthesized_with"] for code in langs] == [["it"], ["es", "pt"], ["es", "pt"]]
    assert record["summary"]["utterances"] == {**first.utterances, **second.utterances}
    assert record["summary"]["seconds"] == {**first.seconds, **second.seconds}
    assert record["summary"]["effects"] == {name: first.effects.get(name, 0) + second.effects.get(name, 0)
                                            for name in {**first.effects, **second.effects}}
    assert record["summary"]["audio_seconds"] == pytest.approx(first.audio_seconds + second.audio_seconds)
    assert not corpus_matches(out, recipe)  # no longer that corpus alone

    # a language written again replaces its entry; one whose folder is gone is dropped
    shutil.rmtree(out / "pt")
    synthesize_corpus(out, ["it"], 5, seed=8, **kw)
    record = json.loads((out / "synth.json").read_text())
    assert list(record["languages"]) == ["es", "it"] and record["seed"] is None
    assert record["languages"]["it"]["utts_per_lang"] == 5 and record["languages"]["it"]["seed"] == 8
    assert sum(record["summary"]["utterances"]["it"].values()) == 5


def test_synth_json_of_an_earlier_version_is_carried_over(tmp_path):
    """A synth.json written before it held options per language: its languages keep its top-level options."""
    out = tmp_path / "corpus"
    synthesize_corpus(out, ["it"], 3, seed=7, words_per_utt=(1, 2), augment="none", show_progress=False)
    record = json.loads((out / "synth.json").read_text())
    old = {**{k: v for k, v in record.items() if k != "languages"},
           "languages": {"it": {"name": "Italian", "family": "Romance", "voice": "it"}}}
    (out / "synth.json").write_text(json.dumps(old))
    synthesize_corpus(out, ["es"], 3, seed=7, words_per_utt=(1, 2), augment="none", show_progress=False)
    record = json.loads((out / "synth.json").read_text())
    assert list(record["languages"]) == ["it", "es"] and record["utts_per_lang"] == 3
    assert record["languages"]["it"]["synthesized_with"] == ["it"] and record["languages"]["it"]["augment"] == "none"
    assert record["summary"]["effects"] is None  # the old record did not count them per language
    assert set(record["summary"]["utterances"]) == {"it", "es"}


def test_require_espeak_is_one_line_when_the_library_is_missing(monkeypatch, tmp_path):
    import espeakng_loader

    from xlsr.data.synth.espeak import require_espeak

    require_espeak()  # installed: nothing to say
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(tmp_path / "libespeak-ng.so"))
    with pytest.raises(XlsrError, match="espeak-ng .* is not usable: .*libespeak-ng.so") as err:
        require_espeak()
    assert "\n" not in str(err.value)
