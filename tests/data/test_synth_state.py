"""An utterance's audio depends on its plan only, not on what the process rendered before (espeak_state)."""

import hashlib
from pathlib import Path

import espeakng_loader
import pytest
import soundfile as sf

from xlsr.data.augment import DEFAULT_AUGMENT, parse_augment
from xlsr.data.manifest import read_manifest
from xlsr.data.synth import synthesize_corpus
from xlsr.data.synth.babble import babble_talkers
from xlsr.data.synth.corpus import plan_corpus
from xlsr.data.synth.espeak import engine
from xlsr.data.synth.espeak_state import CARRIED, CarriedState, elf_symbols
from xlsr.data.synth.languages import parse_languages
from xlsr.data.synth.speakers import Speaker, speak

# Spanish and Russian trills (their pattern followed a count of every voiced cycle since the library was
# loaded), German voiced fricatives, both synthesizers; seed 1 puts babble on 6 of the 24 utterances.
LANGS, UTTS, SEED = ("es", "de", "ru"), 8, 1
OPTIONS = dict(speakers_per_lang=4, words_per_utt=(3, 6))


def _plans():
    return plan_corpus(parse_languages(",".join(LANGS)), UTTS, SEED, voices="varied",
                       augment=parse_augment(DEFAULT_AUGMENT), **OPTIONS)


def _digest(plan) -> str:
    return hashlib.sha256(speak(plan.speaker, plan.text, seed=plan.noise_seed).tobytes()).hexdigest()


def test_an_utterance_sounds_the_same_whatever_was_rendered_before():
    plans = _plans()
    assert {p.speaker.voice.endswith("_k") for p in plans} == {True, False}  # formant and Klatt voices
    forward = [_digest(p) for p in plans]
    babble_talkers.cache_clear()
    babble_talkers(SEED, LANGS)  # background talkers in between, as a babble utterance renders them
    backward = [_digest(p) for p in reversed(plans)][::-1]
    assert forward == backward


def test_corpus_is_the_same_with_one_and_two_workers(tmp_path):
    """Every file of a default corpus (varied voices, effects with babble), byte for byte."""
    one = synthesize_corpus(tmp_path / "1", list(LANGS), UTTS, seed=SEED, workers=1, show_progress=False,
                            **OPTIONS)
    synthesize_corpus(tmp_path / "2", list(LANGS), UTTS, seed=SEED, workers=2, show_progress=False, **OPTIONS)
    assert sum(p.effects is not None and p.effects.noise_kind == "babble" for p in _plans()) == 6
    assert one.utterances == {lang: {"train": 6, "dev": 1, "test": 1} for lang in LANGS}
    for lang in LANGS:
        for split in ("train", "dev", "test"):
            a = read_manifest(tmp_path / "1" / lang / f"{split}.jsonl")
            b = read_manifest(tmp_path / "2" / lang / f"{split}.jsonl")
            assert [(u.id, u.text, u.phones, u.num_samples) for u in a] == [
                (u.id, u.text, u.phones, u.num_samples) for u in b]
            for u, v in zip(a, b):
                assert sf.read(u.audio, dtype="int16")[0].tobytes() == sf.read(v.audio, dtype="int16")[0].tobytes(), u.id


def test_stale_values_in_the_library_do_not_reach_the_next_utterance(monkeypatch):
    """Each carried variable, set to a value an earlier utterance could have left, changes one of these
    utterances unless it is reset: a trill with the formant synthesizer (cycle_count, agc), a voiced
    fricative before a Klatt voice's first sequence (wave_flag), a Klatt voice voiced from its first sample
    (vlast)."""
    state = engine()._state
    assert state.available  # the library espeakng-loader bundles has its symbol table
    plans = {p.id: p for p in _plans()}
    cases = [(plans[uid].speaker, plans[uid].text) for uid in ("ru-train-00001", "ru-test-00000")]
    cases.append((Speaker("pl-x", "pl+xlsr_m2_t088_k", 81, 33, 197), "nie"))
    clean = [speak(speaker, text, seed=1).tobytes() for speaker, text in cases]
    reset = state.reset
    stale = {"cycle_count": 3, "wave_flag": 1, "vlast": 567.0, "agc": 200}
    for i, (name, _, _) in enumerate(CARRIED):
        for with_reset in (True, False):
            monkeypatch.setattr(state, "reset", reset if with_reset else lambda: None)
            rendered = []
            for speaker, text in cases:
                reset()
                state._cells[i][0].value = stale[name]
                rendered.append(speak(speaker, text, seed=1).tobytes())
            assert (rendered == clean) == with_reset, (name, with_reset)


def test_a_library_without_symbols_cannot_be_reset_and_says_so(tmp_path):
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not an ELF file")
    assert elf_symbols(fake) == {}
    assert "espeak_Synth" in elf_symbols(espeakng_loader.get_library_path())
    with pytest.warns(RuntimeWarning, match="cannot reset the state the library keeps between utterances"):
        state = CarriedState(engine()._lib, fake)
    assert not state.available
    state.reset()  # nothing to do, nothing written


def test_data_overlay_is_built_once_under_a_race_and_never_replaced_under_another_reader(tmp_path, monkeypatch):
    """Two `xlsr synth` started together used to delete each other's fresh overlay (one failed with phontab
    missing); a second environment sharing the cache used to replace the first one's folder under it."""
    from concurrent.futures import ThreadPoolExecutor

    from xlsr.data.synth.espeak import deterministic_data_dir

    monkeypatch.setenv("XLSR_CACHE", str(tmp_path / "cache"))
    source = espeakng_loader.get_data_path()
    with ThreadPoolExecutor(4) as pool:
        paths = set(pool.map(lambda _: deterministic_data_dir(source), range(8)))
    assert len(paths) == 1
    first = Path(paths.pop())
    assert (first / "phontab").is_file() and (first / "voices" / "!v").is_dir()
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p != first]
    assert leftovers == []  # the losers' folders were removed

    other = tmp_path / "other-env-data"  # the same data as another environment (venv) would have it
    other.mkdir()
    for entry in Path(source).iterdir():
        (other / entry.name).symlink_to(entry)
    second = Path(deterministic_data_dir(str(other)))
    assert second != first and (first / "phontab").is_file() and (second / "phontab").is_file()
    assert deterministic_data_dir(source) == str(first)


def test_overlays_unused_for_a_month_are_pruned_and_the_ones_in_use_kept(tmp_path, monkeypatch):
    """Each espeak-ng/xlsr version leaves an overlay in the cache; one nobody has used for 30 days goes (with a
    killed build's folder) when a new one is built; one in use by another environment stays."""
    import os
    import time

    from xlsr.data.synth.espeak import deterministic_data_dir

    cache = tmp_path / "cache"
    monkeypatch.setenv("XLSR_CACHE", str(cache))
    source = espeakng_loader.get_data_path()
    current = Path(deterministic_data_dir(source))
    month_ago = time.time() - 31 * 86400
    old, used, killed = cache / "espeak-ng-data-0123456789abcdef", cache / "espeak-ng-data-fedcba9876543210", \
        cache / "espeak-ng-data.x1y2z3"
    for folder in (old, used, killed):
        folder.mkdir()
    for folder in (old, used):
        (folder / "xlsr.stamp").write_text("another version")
    os.utime(old / "xlsr.stamp", (month_ago, month_ago))
    os.utime(killed, (month_ago, month_ago))
    os.utime(current / "xlsr.stamp", (month_ago, month_ago))
    assert deterministic_data_dir(source) == str(current)  # a use touches it (and builds nothing: no pruning)
    assert old.exists() and killed.exists()
    other = tmp_path / "other-env-data"  # another environment's data: a new overlay is built, the cache pruned
    other.mkdir()
    for entry in Path(source).iterdir():
        (other / entry.name).symlink_to(entry)
    deterministic_data_dir(str(other))
    assert not old.exists() and not killed.exists()
    assert used.exists() and (current / "phontab").is_file()
