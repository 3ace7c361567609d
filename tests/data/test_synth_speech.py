"""What a pseudo-speaker's settings do to the audio, espeak's int16 at 22.05 kHz -> float at 16 kHz, and the
white noise of `--noise-snr`."""

import numpy as np
import pytest

from xlsr.data.synth.corpus import add_noise
from xlsr.data.synth.espeak import ESPEAK_SAMPLE_RATE, engine
from xlsr.data.synth.speakers import Speaker, speak

TEXT = "la casa es muy grande y bonita"


def f0_track(x, sr=16000):
    """Fundamental frequency (Hz) of the clearly voiced 40 ms frames (autocorrelation peak in 60-400 Hz)."""
    frame, hop, out = 640, 160, []
    loud = 1e-3 * np.mean(x.astype(np.float64) ** 2)
    for start in range(0, len(x) - frame, hop):
        w = x[start:start + frame].astype(np.float64)
        w -= w.mean()
        if np.mean(w ** 2) < loud:
            continue
        ac = np.correlate(w, w, "full")[frame - 1:]
        lag = sr // 400 + int(np.argmax(ac[sr // 400:sr // 60]))
        if ac[lag] > 0.5 * ac[0]:
            out.append(sr / lag)
    return np.array(out)


def _say(pitch, pitch_range, rate):
    return speak(Speaker("es-x", "es+xlsr_m3", pitch, pitch_range, rate), TEXT, seed=1)


def test_pitch_range_and_rate_each_do_what_they_say():
    """Speakers differ by base pitch, pitch range and rate: each setting reaches espeak as itself."""
    low, high = f0_track(_say(20, 0, 170)), f0_track(_say(80, 0, 170))
    assert np.median(high) > 1.5 * np.median(low)  # base pitch (measured 66 -> 128 Hz)
    flat, lively = f0_track(_say(50, 0, 170)), f0_track(_say(50, 100, 170))
    spread = [np.percentile(f, 90) - np.percentile(f, 10) for f in (flat, lively)]
    assert spread[0] < 5 and spread[1] > 20  # a monotone at range 0 (measured 0 and 36 Hz)
    slow, fast = len(_say(50, 50, 120)), len(_say(50, 50, 240))
    assert fast < 0.6 * slow  # twice the words per minute: about half the samples (measured 0.51)


def test_speech_is_espeaks_samples_scaled_to_one_at_16k():
    """int16 / 32768 resampled from 22.05 kHz: the length scales by 16000/22050 and the level is kept."""
    x = speak(Speaker("es-x", "es+xlsr_f2", 50, 50, 170), TEXT, seed=4)
    pcm = engine().synthesize(TEXT, seed=4)  # the same voice and prosody, still set: espeak's own samples
    assert x.dtype == np.float32 and abs(len(x) - len(pcm) * 16000 / ESPEAK_SAMPLE_RATE) <= 1
    rms = lambda a: float(np.sqrt(np.mean(np.asarray(a, np.float64) ** 2)))  # noqa: E731
    assert rms(x) == pytest.approx(rms(pcm) / 32768, rel=0.03)
    assert 0.05 < np.max(np.abs(x)) <= 1.0


def test_noise_snr_is_in_db_of_power_and_the_sum_stays_in_range():
    x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(32000) / 16000)).astype(np.float32)
    for snr in (0.0, 10.0, 20.0):
        y = add_noise(x, snr, np.random.default_rng(0))
        achieved = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
        assert achieved == pytest.approx(snr, abs=0.2)
    loud = np.full(16000, 0.98, np.float32)  # a FLAC of PCM_16 cannot hold more than full scale
    y = add_noise(loud, 0.0, np.random.default_rng(1))
    assert y.dtype == np.float32 and np.max(np.abs(y)) <= 1.0 and np.max(y) == 1.0
