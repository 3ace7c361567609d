"""Pseudo-speakers: an espeak-ng voice with its own pitch, pitch range and speaking rate, and `speak()`.

Two sets of voices: "basic" (espeak's 12 variants; the corpora made before "varied" existed, reproduced
exactly) and "varied" (each variant also with its formants scaled for a shorter or longer vocal tract and
with the Klatt synthesizer: 120 voices, and wider pitch, range and rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from xlsr.data.synth.espeak import (
    ESPEAK_SAMPLE_RATE,
    SYNTHESIZERS,
    TRACT_SCALES,
    VARIANTS,
    engine,
    variant_name,
)
from xlsr.data.synth.languages import Language
from xlsr.errors import XlsrError
from xlsr.rates import SAMPLE_RATE

VOICE_SETS = ("basic", "varied")
# (pitch, pitch range, rate in words per minute): uniform integer ranges per voice set
_PROSODY = {"basic": ((25, 75), (30, 80), (140, 200)), "varied": ((15, 85), (20, 90), (120, 220))}


@dataclass(frozen=True)
class Speaker:
    """One pseudo-speaker of one language."""

    id: str
    voice: str  # espeak voice with variant, e.g. "de+xlsr_f2" or "de+xlsr_f2_t094_k"
    pitch: int  # 0-100
    pitch_range: int  # 0-100
    rate: int  # words per minute


def voice_variants(voices: str) -> list[str]:
    """Our variant names of a voice set ("basic": 12, "varied": 120)."""
    if voices == "basic":
        return [variant_name(v) for v in VARIANTS]
    if voices == "varied":
        return [variant_name(v, t, s) for v in VARIANTS for t in TRACT_SCALES for s in SYNTHESIZERS]
    raise XlsrError(f"--voices: expected one of {', '.join(VOICE_SETS)}, got {voices!r}")


def make_speakers(lang: Language, count: int, rng: np.random.Generator, voices: str = "basic",
                  prefix: str = "spk") -> list[Speaker]:
    """`count` distinct pseudo-speakers for `lang`, variants cycling through a shuffled list of the voice set."""
    variants = voice_variants(voices)
    (p_lo, p_hi), (r_lo, r_hi), (w_lo, w_hi) = _PROSODY[voices]
    order = rng.permutation(len(variants))
    return [
        Speaker(
            id=f"{lang.code}-{prefix}{i:02d}",
            voice=f"{lang.voice}+{variants[order[i % len(variants)]]}",
            pitch=int(rng.integers(p_lo, p_hi + 1)),
            pitch_range=int(rng.integers(r_lo, r_hi + 1)),
            rate=int(rng.integers(w_lo, w_hi + 1)),
        )
        for i in range(count)
    ]


def speak(speaker: Speaker, text: str, seed: int) -> np.ndarray:
    """`text` in `speaker`'s voice: float32 at 16 kHz (this process's espeak-ng; empty if espeak says nothing)."""
    espeak = engine()
    espeak.set_voice(speaker.voice)
    espeak.set_prosody(rate=speaker.rate, pitch=speaker.pitch, pitch_range=speaker.pitch_range)
    pcm = espeak.synthesize(text, seed=seed)
    if len(pcm) == 0:
        return np.zeros(0, np.float32)
    return soxr.resample(pcm.astype(np.float32) / 32768.0, ESPEAK_SAMPLE_RATE, SAMPLE_RATE)
