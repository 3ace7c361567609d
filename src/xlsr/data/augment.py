"""Acoustic augmentation: speed perturbation, room reverberation, additive noise at an SNR, band-limiting.

A user writes the augmentation as a string, `"reverb=0.3,noise=0.5:5-30,speed=0.3:0.9-1.1,bandlimit=0.2"`:
each effect is `name=share[:low-high]`, the share of utterances it is applied to and the range its
parameter is drawn from (defaults in `EFFECTS`). `parse_augment` turns it into an `AugmentSpec`.

What happens to one utterance is drawn first (`draw_effects`, pure: from a key such as (seed, utterance id),
one generator per effect, so changing one effect's share leaves the others' draws alone) and applied after
(`apply_effects`), in the order of a recording: the talker's speed, the room, noise in the room, then the
channel. Only speed changes the length (`augmented_length` gives it without the audio).

The loaders draw a whole epoch at once (`draw_effect_table`: one row of numbers per item, one generator per effect
for all items) and build an item's `EffectDraw` only where its audio is loaded (`effect_draw`): planning an epoch of
a million utterances then costs a few arrays, not a million objects and generators.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, fields, replace

import numpy as np
import soxr

from xlsr.data.rooms import ROOMS, RT60_LIMITS, Room, draw_room, impulse_response
from xlsr.errors import XlsrError
from xlsr.rates import SAMPLE_RATE

NOISE_KINDS = ("white", "pink", "brown", "babble")
BABBLE_TALKERS = (3, 6)  # talkers summed into one babble noise
PEAK = 0.99  # an augmented utterance louder than this is scaled down (never clipped: the SNR stays exact)


@dataclass(frozen=True)
class Effect:
    """One effect: the share of utterances it is applied to and the range its parameter is drawn from."""

    share: float
    low: float
    high: float


# name -> (default range, allowed limits, unit/what the range is): the parameter each effect draws.
EFFECTS: dict[str, tuple[tuple[float, float], tuple[float, float], str]] = {
    "speed": ((0.9, 1.1), (0.5, 2.0), "speed factor"),
    "reverb": ((0.2, 0.8), RT60_LIMITS, "RT60 in seconds"),
    "noise": ((5.0, 30.0), (-10.0, 60.0), "SNR in dB"),
    "bandlimit": ((3000.0, 6000.0), (1000.0, 7800.0), "upper band edge in Hz"),
}


@dataclass(frozen=True)
class AugmentSpec:
    """Which effects are on (None: off), with their shares and ranges; `parse_augment` builds it."""

    speed: Effect | None = None
    reverb: Effect | None = None
    noise: Effect | None = None
    bandlimit: Effect | None = None

    @property
    def enabled(self) -> bool:
        """True if any effect is applied to some utterances."""
        return any(e is not None and e.share > 0 for e in self._effects().values())

    def _effects(self) -> dict[str, Effect | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __str__(self) -> str:
        parts = [f"{name}={e.share:g}:{e.low:g}-{e.high:g}" for name, e in self._effects().items() if e is not None]
        return ",".join(parts) or "none"


# The realistic corpus of `xlsr synth` (docs/synth.md): most read speech is near-field and fairly clean, so
# reverberation, a narrow channel and a different speed on a minority, noise on half; ~20% untouched.
DEFAULT_AUGMENT = "reverb=0.3,noise=0.5:5-30,speed=0.3:0.9-1.1,bandlimit=0.2"

_NUMBER = r"-?\d+(?:\.\d*)?|-?\.\d+"
_ITEM = re.compile(rf"^(?P<share>{_NUMBER})(?::(?P<low>{_NUMBER})-(?P<high>{_NUMBER}))?$")


def parse_augment(text: str | AugmentSpec | None) -> AugmentSpec:
    """`"none"`, `"default"` or `"name=share[:low-high],..."` -> AugmentSpec; XlsrError naming what is wrong."""
    if isinstance(text, AugmentSpec):
        return text
    text = (text or "none").strip()
    if text.lower() in ("none", "off", ""):
        return AugmentSpec()
    if text.lower() == "default":
        text = DEFAULT_AUGMENT
    chosen: dict[str, Effect] = {}
    for item in text.split(","):
        name, eq, value = (part.strip() for part in item.partition("="))
        if name not in EFFECTS:
            raise XlsrError(f"augment {item.strip()!r}: unknown effect {name!r} (known: {', '.join(EFFECTS)}; "
                            f"or 'none', 'default')")
        if name in chosen:
            raise XlsrError(f"augment {item.strip()!r}: {name} is given twice")
        match = _ITEM.match(value) if eq else None
        if match is None:
            raise XlsrError(f"augment {item.strip()!r}: expected {name}=SHARE or {name}=SHARE:LOW-HIGH "
                            f"(SHARE in 0-1, LOW-HIGH the {EFFECTS[name][2]})")
        chosen[name] = _checked(name, item.strip(), match)
    return AugmentSpec(**chosen)


def _checked(name: str, item: str, match: re.Match) -> Effect:
    default, (lo_limit, hi_limit), what = EFFECTS[name]
    share = float(match["share"])
    low, high = (float(match["low"]), float(match["high"])) if match["low"] is not None else default
    if not 0.0 <= share <= 1.0:
        raise XlsrError(f"augment {item!r}: the share of utterances must be in [0, 1], got {share:g}")
    if low > high:
        raise XlsrError(f"augment {item!r}: the {what} range {low:g}-{high:g} has its low end above its high end")
    if low < lo_limit or high > hi_limit:
        raise XlsrError(f"augment {item!r}: the {what} range {low:g}-{high:g} is outside "
                        f"{lo_limit:g}-{hi_limit:g}")
    return Effect(share, low, high)


# --- drawing: what happens to one utterance ---------------------------------------------------------------

@dataclass(frozen=True)
class EffectDraw:
    """The effects drawn for one utterance (None: not applied) and the key its noise samples come from."""

    key: tuple[int, ...]
    speed: float | None = None
    room: Room | None = None
    snr_db: float | None = None
    noise_kind: str | None = None
    band_hz: float | None = None  # the channel's upper band edge


def item_key(seed: int, *parts: int | str) -> tuple[int, ...]:
    """A draw key from a seed and integers or strings (an utterance id: its CRC-32, stable across runs)."""
    return (int(seed), *(zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts))


def draw_effects(spec: AugmentSpec, key: tuple[int, ...], room_seed: int) -> EffectDraw | None:
    """The effects for the utterance of `key` (None: none applies); rooms come from the bank of `room_seed`."""
    draw = EffectDraw(key=key)
    for n, (name, effect) in enumerate(spec._effects().items()):
        rng = np.random.default_rng([*key, 0xA0 + n])  # one generator per effect
        if effect is None or rng.random() >= effect.share:
            continue
        value = float(rng.uniform(effect.low, effect.high))
        if name == "speed":
            draw = replace(draw, speed=value)
        elif name == "reverb":
            index = int(rng.integers(ROOMS))
            draw = replace(draw, room=draw_room(room_seed, index, (effect.low, effect.high)))
        elif name == "noise":
            draw = replace(draw, snr_db=value, noise_kind=NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))])
        else:
            draw = replace(draw, band_hz=value)
    return None if draw == EffectDraw(key=key) else draw


def augmented_length(num_samples: int, draw: EffectDraw | None) -> int:
    """The length after `apply_effects` (only speed perturbation changes it)."""
    return num_samples if draw is None or draw.speed is None else max(1, int(round(num_samples / draw.speed)))


# --- drawing a whole epoch: the loaders ------------------------------------------------------------------

# One item's effects as numbers: NaN (or -1) where an effect is not applied; `item` keys its noise samples.
EFFECT_ROW = np.dtype([("item", np.int64), ("speed", np.float64), ("room", np.int16), ("snr_db", np.float64),
                       ("noise_kind", np.int8), ("band_hz", np.float64)])


def draw_effect_table(spec: AugmentSpec, key: tuple[int, ...], count: int) -> np.ndarray:
    """The effects of items 0..count-1, one EFFECT_ROW each, drawn as arrays: one generator per effect (so changing
    one effect's share leaves the others' draws alone) that gives each item a row of uniforms of its own, so that
    item k's effects depend on (`key`, k) only. The parameters follow `draw_effects`'s rules, not its values."""
    table = np.zeros(count, EFFECT_ROW)
    table["item"] = np.arange(count)
    table["speed"] = table["snr_db"] = table["band_hz"] = np.nan
    table["room"] = table["noise_kind"] = -1
    for n, (name, effect) in enumerate(spec._effects().items()):
        if effect is None or effect.share <= 0:
            continue
        u = np.random.default_rng([*key, 0xA0 + n]).random((count, 3))  # applied?, the value, a choice
        on = u[:, 0] < effect.share
        value = effect.low + (effect.high - effect.low) * u[:, 1]
        if name == "speed":
            table["speed"] = np.where(on, value, np.nan)
        elif name == "reverb":  # a room of the bank; its RT60 comes with it (effect_draw)
            table["room"] = np.where(on, np.minimum((u[:, 2] * ROOMS).astype(np.int64), ROOMS - 1), -1)
        elif name == "noise":
            kind = np.minimum((u[:, 2] * len(NOISE_KINDS)).astype(np.int64), len(NOISE_KINDS) - 1)
            table["snr_db"] = np.where(on, value, np.nan)
            table["noise_kind"] = np.where(on, kind, -1)
        else:
            table["band_hz"] = np.where(on, value, np.nan)
    return table


def effect_draw(spec: AugmentSpec, row: np.void, key: tuple[int, ...], room_seed: int) -> EffectDraw | None:
    """A `draw_effect_table` row as the EffectDraw `apply_effects` takes (None: no effect); its noise samples come
    from (*key, item), its room from the bank of `room_seed`."""
    def given(value: float) -> float | None:
        return None if np.isnan(value) else float(value)

    room, kind = int(row["room"]), int(row["noise_kind"])
    draw = EffectDraw(key=(*key, int(row["item"])), speed=given(row["speed"]),
                      room=draw_room(room_seed, room, (spec.reverb.low, spec.reverb.high)) if room >= 0 else None,
                      snr_db=given(row["snr_db"]), noise_kind=NOISE_KINDS[kind] if kind >= 0 else None,
                      band_hz=given(row["band_hz"]))
    return None if draw == EffectDraw(key=draw.key) else draw


def augmented_lengths(num_samples: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """`augmented_length` of many items at once: their lengths after speed perturbation (NaN: none), int64."""
    n, off = np.asarray(num_samples, dtype=np.int64), np.isnan(speed)
    sped = np.maximum(1, np.round(n / np.where(off, 1.0, speed))).astype(np.int64)  # round half to even, as round()
    return np.where(off, n, sped)


# --- applying --------------------------------------------------------------------------------------------

def apply_effects(x: np.ndarray, draw: EffectDraw | None, babble: list[np.ndarray] | None = None) -> np.ndarray:
    """`x` (16 kHz float) with the drawn effects: speed, reverberation, noise, band-limiting; float32."""
    if draw is None:
        return x
    y = np.asarray(x, dtype=np.float64)
    if draw.speed is not None:
        y = change_speed(y, draw.speed)
    if draw.room is not None:
        y = reverberate(y, impulse_response(draw.room))
    if draw.snr_db is not None:
        rng = np.random.default_rng([*draw.key, 0xB0])
        y = mix_at_snr(y, make_noise(draw.noise_kind, len(y), rng, babble), draw.snr_db)
    if draw.band_hz is not None:
        y = band_limit(y, draw.band_hz)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > PEAK:
        y = y * (PEAK / peak)
    return y.astype(np.float32)


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch together, as sox `speed`): soxr resampling, round(len/factor) samples."""
    y = soxr.resample(x, SAMPLE_RATE * factor, SAMPLE_RATE)
    n = max(1, int(round(len(x) / factor)))
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """`x` convolved with a room impulse response that starts at the direct sound: same length, same RMS."""
    # FFT convolution with scipy.fft (0.2 CPU-s to import) rather than scipy.signal.fftconvolve (0.9 CPU-s, measured:
    # most of what a new synthesis process pays once)
    import scipy.fft

    m = scipy.fft.next_fast_len(len(x) + len(rir) - 1, real=True)
    y = scipy.fft.irfft(scipy.fft.rfft(x, m) * scipy.fft.rfft(rir.astype(np.float64), m), m)[:len(x)]
    rms_x, rms_y = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(y ** 2))
    return y * (rms_x / rms_y) if rms_y > 0 else y


def make_noise(kind: str, n: int, rng: np.random.Generator, babble: list[np.ndarray] | None = None) -> np.ndarray:
    """`n` samples of noise: white, pink (1/f power), brown (1/f²) or babble (talkers from `babble`)."""
    if kind == "babble":
        if not babble:
            raise XlsrError("augment noise: babble noise needs other utterances to draw talkers from")
        return babble_noise(n, rng, babble)
    if kind == "white":
        return rng.standard_normal(n)
    import scipy.fft  # 0.2 CPU-s to import (measured), only where noise is made

    slope = {"pink": 0.5, "brown": 1.0}[kind]  # amplitude ∝ f^-slope
    # shaped at a length with small prime factors, then cut: an FFT of a prime length (utterance lengths are
    # arbitrary) measured 10x slower
    m = scipy.fft.next_fast_len(n, real=True)
    spectrum = scipy.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1 / SAMPLE_RATE)
    f[0] = f[1] if m > 2 else 1.0  # no infinite DC gain
    return scipy.fft.irfft(spectrum / f ** slope, m)[:n]


def babble_noise(n: int, rng: np.random.Generator, talkers: list[np.ndarray]) -> np.ndarray:
    """A few talkers from `talkers`, each at unit power from a random start and looped, summed to `n` samples."""
    k = int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))
    out = np.zeros(n)
    for t in rng.choice(len(talkers), size=k, replace=len(talkers) < k):
        voice = np.asarray(talkers[t], dtype=np.float64)
        voice = voice / (np.sqrt(np.mean(voice ** 2)) + 1e-12)
        out += np.resize(np.roll(voice, -int(rng.integers(len(voice)))), n)
    return out


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`x` plus `noise` scaled so that 10·log10(P_x / P_noise) is exactly `snr_db` (silent `x`: unchanged)."""
    p_x, p_n = float(np.mean(x ** 2)), float(np.mean(noise ** 2))
    if p_x == 0 or p_n == 0:
        return x
    return x + noise * np.sqrt(p_x / (p_n * 10 ** (snr_db / 10)))


def band_limit(x: np.ndarray, high_hz: float) -> np.ndarray:
    """A narrowband channel: `x` through soxr at twice `high_hz` and back, as a codec at a lower sampling rate
    would (flat below the edge, ≥ 55 dB down above it), same length."""
    rate = 2.0 * high_hz
    y = soxr.resample(soxr.resample(x, SAMPLE_RATE, rate), rate, SAMPLE_RATE)
    return y[:len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
