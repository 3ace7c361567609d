import numpy as np
import pytest

from xlsr.data.manifest import Utterance
from xlsr.data.sampling import (
    LanguageSampler,
    language_hours,
    language_weights,
    utterance_weights,
    weights_table,
)
from xlsr.errors import XlsrError

# CommonVoice-10 unlabeled hours (spec §6.2) and the shares quoted in §6.3.
CV10 = {"es": 168, "fr": 353, "it": 90, "ky": 17, "nl": 29, "ru": 55, "sv": 3, "tr": 11, "tt": 17, "zh": 50}


@pytest.mark.parametrize("alpha,fr,sv", [(1.0, 0.445, 0.004), (0.5, 0.253, 0.023), (0.2, 0.152, 0.059),
                                         (0.05, 0.112, 0.088)])
def test_weights_match_the_spec_examples(alpha, fr, sv):
    p = language_weights(CV10, alpha)
    assert sum(p.values()) == pytest.approx(1.0)
    assert p["fr"] == pytest.approx(fr, abs=0.0015) and p["sv"] == pytest.approx(sv, abs=0.0015)


def test_alpha_zero_is_uniform_and_bad_input_is_refused():
    assert all(v == pytest.approx(0.25) for v in language_weights({"a": 1, "b": 2, "c": 30, "d": 4}, 0).values())
    with pytest.raises(XlsrError, match="alpha"):
        language_weights(CV10, 1.5)
    with pytest.raises(XlsrError, match="xx"):
        language_weights({"es": 1.0, "xx": 0.0}, 0.5)
    assert "p(α=0.5)" in weights_table(CV10, 0.5) and "fr" in weights_table(CV10, 0.5)


def _utts(counts, seconds=None):
    seconds = seconds or {}
    return [Utterance(audio=f"/{lang}/{i}.flac", num_samples=int(16000 * seconds.get(lang, 1)), lang=lang,
                      id=f"{lang}{i}") for lang, n in counts.items() for i in range(n)]


@pytest.mark.parametrize("counts, seconds, alpha, share_a", [
    ({"a": 100, "b": 1000}, {"a": 10, "b": 1}, 1.0, 0.5),  # equal hours: half the audio each, at any α
    ({"a": 100, "b": 1000}, {"a": 10, "b": 1}, 0.0, 0.5),
    ({"a": 300, "b": 1000}, {"a": 10, "b": 1}, 1.0, 0.75),  # natural: the corpus's own share of hours
    ({"a": 300, "b": 1000}, {"a": 10, "b": 1}, 0.5, 3 ** 0.5 / (3 ** 0.5 + 1)),
])
def test_each_languages_share_of_the_audio_drawn_is_its_p_l(counts, seconds, alpha, share_a):
    utts = _utts(counts, seconds)
    sampler = LanguageSampler(utts, alpha=alpha, seed=3, epoch_size=40000)
    draw = sampler.epoch_indices(0)
    audio = {lang: sum(utts[i].num_samples for i in draw if utts[i].lang == lang) for lang in counts}
    assert audio["a"] / sum(audio.values()) == pytest.approx(share_a, abs=0.01)
    assert sampler.weights["a"] == pytest.approx(share_a)  # the table's p(α) is the audio share
    if alpha == 1.0:  # natural: every utterance of the corpus as likely as any other
        q = utterance_weights(language_hours(utts), {lang: n for lang, n in counts.items()}, alpha)
        assert q["a"] == pytest.approx(counts["a"] / sum(counts.values()))


def test_epoch_draw_follows_the_weights_and_is_deterministic():
    utts = _utts({"a": 900, "b": 90, "c": 10})
    sampler = LanguageSampler(utts, alpha=0.3, seed=1, epoch_size=20000)
    draw = sampler.epoch_indices(0)
    shares = {lang: np.mean([utts[i].lang == lang for i in draw]) for lang in "abc"}
    expected = language_weights(language_hours(utts), 0.3)  # utterances of equal length: the audio share too
    for lang in "abc":
        assert shares[lang] == pytest.approx(expected[lang], abs=0.015)
    assert np.array_equal(draw, LanguageSampler(utts, alpha=0.3, seed=1, epoch_size=20000).epoch_indices(0))
    assert not np.array_equal(draw, sampler.epoch_indices(1))
    # upsampled language "c" cycles through all its utterances before repeating one
    c_draws = [i for i in draw if utts[i].lang == "c"]
    assert len(set(c_draws)) == 10 and len(c_draws) > 1000
    # every language repeats all of its utterances before any twice: draw counts differ by at most 1
    per_utterance = np.bincount(draw, minlength=len(utts))
    for lang in "abc":
        own = per_utterance[[i for i, u in enumerate(utts) if u.lang == lang]]
        assert own.max() - own.min() <= 1, lang


def test_ranks_get_disjoint_shares_that_cover_the_epoch():
    utts = _utts({"a": 50, "b": 20})
    ranks = [LanguageSampler(utts, alpha=0.5, seed=4, rank=r, world_size=3) for r in range(3)]
    for s in ranks:
        s.set_epoch(2)
    shares = [list(s) for s in ranks]
    positions = [list(range(r, 70, 3)) for r in range(3)]
    full = ranks[0].epoch_indices(2)
    for share, pos in zip(shares, positions):
        assert share == [int(full[p]) for p in pos]
    assert sum(len(s) for s in shares) == 70
