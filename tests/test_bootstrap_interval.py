"""The bootstrap interval of a corpus error rate: around the rate, as wide as the spread of utterances makes it, the
same for the same counts, and none where there is nothing to resample."""

import numpy as np
import pytest

from xlsr.text.bootstrap import rate_interval


def test_the_interval_holds_the_rate_and_narrows_as_the_test_set_grows():
    rng = np.random.default_rng(0)
    ref = rng.integers(20, 60, size=400)
    err = rng.binomial(ref, 0.3)
    rate = err.sum() / ref.sum()
    small = rate_interval(err[:15], ref[:15])
    large = rate_interval(err, ref)
    assert small[0] < err[:15].sum() / ref[:15].sum() < small[1] and large[0] < rate < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 3  # 400 utterances against 15: about sqrt(27) narrower


def test_the_interval_matches_the_spread_that_the_rate_has_across_test_sets():
    """Sampling test sets of 50 from one population of utterances: the 95% interval of one set is about as wide as
    the middle 95% of the rates of many sets (within 30%)."""
    rng = np.random.default_rng(1)
    ref = rng.integers(10, 80, size=20000)
    err = rng.binomial(ref, rng.beta(2, 5, size=ref.size))
    sets = rng.integers(0, ref.size, size=(2000, 50))
    rates = err[sets].sum(1) / ref[sets].sum(1)
    spread = np.percentile(rates, 97.5) - np.percentile(rates, 2.5)
    widths = [np.subtract(*rate_interval(err[s], ref[s])[::-1]) for s in sets[:40]]
    assert np.median(widths) == pytest.approx(spread, rel=0.3)


def test_the_same_counts_give_the_same_interval_and_nothing_to_resample_gives_none():
    err, ref = [3, 0, 5, 1], [10, 12, 9, 11]
    assert rate_interval(err, ref) == rate_interval(err, ref)
    assert rate_interval([3], [10]) is None  # one utterance: no spread
    assert rate_interval([0, 0], [0, 0]) is None  # no reference units
    assert rate_interval([0, 0, 0], [5, 5, 5]) == (0.0, 0.0)  # no errors anywhere: none in any resample


def test_a_large_test_set_is_resampled_in_chunks_with_the_same_result(monkeypatch):
    import xlsr.text.bootstrap as bootstrap

    rng = np.random.default_rng(2)
    ref = rng.integers(5, 30, size=300)
    err = rng.binomial(ref, 0.2)
    whole = rate_interval(err, ref)
    monkeypatch.setattr(bootstrap, "MAX_DRAWS", 300 * 7)  # 7 resamples at a time: the same draws, in chunks
    chunked = rate_interval(err, ref)
    assert chunked == whole


def test_strata_are_resampled_within_themselves_so_their_mix_does_not_widen_the_interval():
    """Two languages far apart (10% and 60% errors): drawing from the pool mixes them anew in every resample; drawing
    within each keeps the test set's mix, and only the spread within each language remains."""
    rng = np.random.default_rng(3)
    ref = rng.integers(20, 40, size=60)
    lang = np.repeat(["aa", "bb"], 30)
    err = rng.binomial(ref, np.where(lang == "aa", 0.1, 0.6))
    pooled = rate_interval(err, ref)
    stratified = rate_interval(err, ref, lang)
    rate = err.sum() / ref.sum()
    assert stratified[0] < rate < stratified[1]
    assert stratified[1] - stratified[0] < 0.6 * (pooled[1] - pooled[0])
    assert rate_interval(err, ref, ["one"] * 60) == pooled  # one stratum: the pool
