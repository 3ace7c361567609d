"""The same amount of audio from every language: a seeded sample of utterances, the last one cropped.

Comparing codeword distributions is only fair when each language contributes the same number of
seconds (spec §9 step 2), so each language gets a budget of samples, filled with whole utterances
in a seeded random order and topped up with the start of one more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import XlsrError
from xlsr.rates import SAMPLE_RATE


@dataclass
class Clip:
    """The first `num_samples` samples of one utterance's audio."""

    utterance: object  # xlsr.data.manifest.Utterance
    num_samples: int


def available_seconds(utts: Sequence, sample_rate: int = SAMPLE_RATE) -> float:
    """Total audio of a language's utterances in seconds, from the manifest's sample counts."""
    num_samples = utts.num_samples if isinstance(utts, UtteranceIndex) else [int(u.num_samples) for u in utts]
    return int(np.sum(num_samples, dtype=np.int64)) / sample_rate


def seconds_per_language(
    available: dict[str, float],
    requested: float | None,
    *,
    max_seconds: float,
    manifests: dict[str, Path] | None = None,
) -> float:
    """The per-language amount to analyse: `requested`, or the smallest language's total capped at `max_seconds`."""
    if requested is not None and requested <= 0:
        raise XlsrError(f"--seconds-per-lang: must be positive, got {requested}")
    need = requested if requested is not None else min(min(available.values()), max_seconds)
    lang = min(available, key=available.get)  # the language with the least audio is the one that binds
    have = available[lang]
    where = f"{manifests[lang]}: " if manifests and lang in manifests else ""
    if have <= 0:
        raise XlsrError(f"{where}language {lang!r} has no audio (no utterances); add some or leave it out (--langs)")
    if have < need:
        raise XlsrError(
            f"{where}language {lang!r} has {have:.1f} s of audio but the analysis needs {need:.1f} s "
            f"per language; lower --seconds-per-lang or add audio"
        )
    return float(need)


def select_clips(utts: Sequence, seconds: float, *, seed: int = 0, min_samples: int = 400,
                 sample_rate: int = SAMPLE_RATE) -> list[Clip]:
    """Seeded random utterances whose audio adds up to `seconds`, the last one cropped to fit.

    A leftover shorter than `min_samples` (the CNN's receptive field) would give no frame, so it is
    dropped: the total then falls short by less than one receptive field (25 ms for wav2vec 2.0).
    """
    budget = int(round(seconds * sample_rate))
    order = np.random.default_rng(seed).permutation(len(utts))
    clips: list[Clip] = []
    for i in order:
        if budget < min_samples:
            break
        utt = utts[int(i)]
        take = min(int(utt.num_samples), budget)
        if take < min_samples:
            continue  # too short to give a frame; a longer utterance may still fill the budget
        clips.append(Clip(utt, take))
        budget -= take
    return clips

