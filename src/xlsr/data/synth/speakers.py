"""Pseudo-speakers: an espeak-ng voice variant with its own pitch, pitch range and speaking rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlsr.data.synth.espeak import VARIANT_PREFIX, VARIANTS
from xlsr.data.synth.languages import Language


@dataclass(frozen=True)
class Speaker:
    """One pseudo-speaker of one language."""

    id: str
    voice: str  # espeak voice with variant, e.g. "de+xlsr_f2"
    pitch: int  # 0-100
    pitch_range: int  # 0-100
    rate: int  # words per minute


def make_speakers(lang: Language, count: int, rng: np.random.Generator) -> list[Speaker]:
    """`count` distinct pseudo-speakers for `lang`, variants cycling through a shuffled list."""
    order = rng.permutation(len(VARIANTS))
    return [
        Speaker(
            id=f"{lang.code}-spk{i:02d}",
            voice=f"{lang.voice}+{VARIANT_PREFIX}{VARIANTS[order[i % len(VARIANTS)]]}",
            pitch=int(rng.integers(25, 76)),
            pitch_range=int(rng.integers(30, 81)),
            rate=int(rng.integers(140, 201)),
        )
        for i in range(count)
    ]
