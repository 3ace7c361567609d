"""The same amount of audio from every language: a seeded sample of utterances, the last one cropped.

Comparing codeword distributions is only fair when each language contributes the same number of
seconds (spec §9 step 2), so each language gets a budget of samples, filled with whole utterances
in a seeded random order and topped up with the start of one more. Only utterances of at least the
CNN's receptive field count: a shorter one gives no frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import XlsrError
from xlsr.rates import SAMPLE_RATE


@dataclass
class Clip:
    """The first `num_samples` samples of one utterance's audio (`audio`: those samples, once read)."""

    utterance: object  # xlsr.data.manifest.Utterance
    num_samples: int
    audio: np.ndarray | None = field(default=None, compare=False, repr=False)


def available_seconds(utts: Sequence, min_samples: int = 400, sample_rate: int = SAMPLE_RATE) -> float:
    """Audio of a language's utterances of at least `min_samples` (the ones that give a frame) in seconds,
    from the manifest's sample counts."""
    num_samples = utts.num_samples if isinstance(utts, UtteranceIndex) else [int(u.num_samples) for u in utts]
    num_samples = np.asarray(num_samples, dtype=np.int64)
    return int(num_samples[num_samples >= min_samples].sum()) / sample_rate


def distinct_seconds(have: float, need: float, max_decimals: int = 6) -> tuple[str, str]:
    """`have` and `need` as text with the fewest decimals (at least one) that tell two different amounts apart."""
    for decimals in range(1, max_decimals + 1):
        texts = f"{have:.{decimals}f}", f"{need:.{decimals}f}"
        if texts[0] != texts[1]:
            break
    return texts


def seconds_per_language(
    available: dict[str, float],
    requested: float | None,
    *,
    max_seconds: float,
    manifests: dict[str, Path] | None = None,
    min_samples: int = 400,
    sample_rate: int = SAMPLE_RATE,
) -> float:
    """The per-language amount to analyse: `requested`, or the smallest language's total capped at `max_seconds`.

    `available` counts only utterances that give a frame (`available_seconds` with the same `min_samples`).
    """
    if requested is not None and requested * sample_rate < min_samples:
        raise XlsrError(f"--seconds-per-lang: give at least {min_samples / sample_rate:g} s (the model's receptive "
                        f"field, {min_samples} samples: less audio gives no frame), got {requested:g}")
    need = requested if requested is not None else min(min(available.values()), max_seconds)
    lang = min(available, key=available.get)  # the language with the least audio is the one that binds
    have = available[lang]
    where = f"{manifests[lang]}: " if manifests and lang in manifests else ""
    if have <= 0:
        raise XlsrError(f"{where}language {lang!r} has no audio (no utterances of at least {min_samples} samples); "
                        f"add some or leave it out (--langs)")
    if have < need:
        have_text, need_text = distinct_seconds(have, need)
        raise XlsrError(
            f"{where}language {lang!r} has {have_text} s of audio but the analysis needs {need_text} s per language "
            f"(counting utterances of at least {min_samples} samples, the receptive field); lower --seconds-per-lang "
            f"or add audio"
        )
    return float(need)


def select_clips(utts: Sequence, seconds: float, *, seed: int = 0, min_samples: int = 400,
                 sample_rate: int = SAMPLE_RATE, read: Callable[[Clip], Clip | None] | None = None) -> list[Clip]:
    """Seeded random utterances whose audio adds up to `seconds`, the last one cropped to fit (`iter_clips`)."""
    return list(iter_clips(utts, seconds, seed=seed, min_samples=min_samples, sample_rate=sample_rate, read=read))


def iter_clips(utts: Sequence, seconds: float, *, seed: int = 0, min_samples: int = 400,
               sample_rate: int = SAMPLE_RATE, read: Callable[[Clip], Clip | None] | None = None) -> Iterator[Clip]:
    """The clips of `select_clips` one at a time, each read only when it is asked for.

    A leftover shorter than `min_samples` (the CNN's receptive field) would give no frame, so it is
    dropped: the total then falls short by less than one receptive field (25 ms for wav2vec 2.0).
    With `read`, each chosen clip is read when it comes (`read(clip)`: the clip as read, None if unreadable) and the
    budget counts the samples read, so the next utterances in the same order fill in for an unreadable one.
    """
    budget = int(round(seconds * sample_rate))
    order = np.random.default_rng(seed).permutation(len(utts))
    for i in order:
        if budget < min_samples:
            break
        utt = utts[int(i)]
        clip = Clip(utt, min(int(utt.num_samples), budget))
        if clip.num_samples < min_samples:
            continue  # too short to give a frame; a longer utterance may still fill the budget
        if read is not None:
            clip = read(clip)
            if clip is None or clip.num_samples < min_samples:
                continue  # unreadable, or shorter than the manifest said: the next utterance takes its place
        budget -= clip.num_samples
        yield clip


def check_audio_read(samples_read: dict[str, int], seconds: float, *, min_samples: int = 400,
                     sample_rate: int = SAMPLE_RATE, manifests: dict[str, Path] | None = None) -> None:
    """One XlsrError line for a language whose audio read falls short of the budget by more than one receptive
    field (more than a dropped leftover costs): its unreadable utterances could not all be replaced."""
    budget = int(round(seconds * sample_rate))
    for lang, read in samples_read.items():
        if budget - read > min_samples:
            where = f"{manifests[lang]}: " if manifests and lang in manifests else ""
            have, need = distinct_seconds(read / sample_rate, seconds)
            raise XlsrError(
                f"{where}language {lang!r}: only {have} s of its audio could be read but the analysis needs {need} s "
                f"per language (unreadable audio files, logged above?); fix them, or lower --seconds-per-lang"
            )
