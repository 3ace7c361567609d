"""load_audio at every rate: upsampled as well as downsampled, and the header's length is the loaded length."""

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.audio import audio_num_samples, decode_audio, load_audio


def _tone(rate, frames, freq=440.0):
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(frames) / rate)


def _peak_hz(x, rate=16000):
    return float(np.argmax(np.abs(np.fft.rfft(x))) * rate / len(x))


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_every_rate_comes_out_at_16k_with_its_pitch(tmp_path, rate):
    """Telephone audio (8 kHz) is upsampled too: one second is 16000 samples and a 440 Hz tone stays 440 Hz."""
    path = tmp_path / "a.wav"
    sf.write(path, _tone(rate, rate), rate, subtype="PCM_16")
    x = load_audio(path)
    assert abs(len(x) - 16000) <= 1
    assert _peak_hz(x) == pytest.approx(440.0, abs=2.0)
    assert np.max(np.abs(x)) == pytest.approx(0.5, abs=0.02)  # int16 read as float in [-1, 1]
    assert np.array_equal(decode_audio(path.read_bytes(), "a"), x)


@pytest.mark.parametrize("rate, frames", [(44100, 22052), (22050, 11026), (44100, 22051), (8000, 4001)])
def test_header_length_is_the_loaded_length(tmp_path, rate, frames):
    """audio_num_samples (what the index and batching plan with) is exactly len(load_audio) for wav,
    also where the 16 kHz length is not a whole number (22052 frames at 44.1 kHz: 8000.73 -> 8001)."""
    path = tmp_path / "a.wav"
    sf.write(path, _tone(rate, frames), rate, subtype="PCM_16")
    assert audio_num_samples(path) == len(load_audio(path))
