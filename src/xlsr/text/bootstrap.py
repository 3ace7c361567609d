"""How far a corpus error rate could move on another test set of the same kind and size: the percentile bootstrap
over utterances (Bisani & Ney, 2004). A 15-utterance test set puts a PER within several points of its value by chance
(docs/demo/investigation.md); the interval says so beside the rate, before two models are ranked on it.

The rate stays what metrics.py defines, Σ errors / Σ reference units; each resample draws as many utterances as
were scored, with replacement, and takes that rate of them. With strata (a test set's languages), each resample
draws within each stratum as many as it holds: the mix of languages is the test set's design, not chance. The draws
are seeded: the same counts give the same interval on every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000
MAX_DRAWS = 10_000_000  # utterance draws held at once (80 MB of indices)


def rate_interval(errors: Sequence[int], ref_lens: Sequence[int], strata: Sequence | None = None, *,
                  resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                  seed: int = 0) -> tuple[float, float] | None:
    """The `confidence` percentile-bootstrap interval of Σ errors / Σ ref_lens over utterances (one entry each, in
    `strata` where given: each stratum resampled within itself); None for fewer than two utterances (in some
    stratum) or no reference units (no spread to measure)."""
    e = np.asarray(errors, dtype=np.float64)
    n = np.asarray(ref_lens, dtype=np.float64)
    if len(e) < 2 or n.sum() == 0:
        return None
    groups = [np.arange(len(e))] if strata is None else \
        [np.flatnonzero(codes == s) for codes in [np.asarray(strata)] for s in dict.fromkeys(strata)]
    if max(len(members) for members in groups) < 2:  # one utterance a stratum: each resample is the test set itself
        return None
    rng = np.random.default_rng(seed)
    wrong, units = np.zeros(resamples), np.zeros(resamples)
    chunk = max(1, min(resamples, MAX_DRAWS // len(e)))
    for start in range(0, resamples, chunk):
        rows = slice(start, min(start + chunk, resamples))
        for members in groups:
            drawn = members[rng.integers(0, len(members), size=(rows.stop - rows.start, len(members)))]
            wrong[rows] += e[drawn].sum(axis=1)
            units[rows] += n[drawn].sum(axis=1)
    # a resample of only empty references has no rate (left out of the percentiles)
    rates = np.where(units > 0, wrong / np.maximum(units, 1), np.nan)
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(rates, [tail, 100 - tail])
    return float(low), float(high)
