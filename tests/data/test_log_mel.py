"""The input's log-mel spectrum: windows that match the CNN's frames, values against torch.stft, bad input."""

import math

import pytest
import torch

from xlsr.data.log_mel import hz_to_mel, log_mel, mel_filterbank, mel_to_hz, num_frames
from xlsr.errors import XlsrError
from xlsr.model import Wav2Vec2Config
from xlsr.model.feature_encoder import FeatureEncoder


def test_frames_are_the_standard_cnns_frames():
    cnn = FeatureEncoder(Wav2Vec2Config())
    lengths = [0, 399, 400, 719, 720, 1000, 16000, 16319, 16320, 80123]
    expected = cnn.frame_lengths(torch.tensor(lengths)).clamp_min(0).tolist()
    assert [num_frames(n) for n in lengths] == expected
    assert [log_mel(torch.zeros(n)).shape[0] for n in lengths] == expected


def test_mel_scale_round_trips_and_the_filters_are_triangles_in_order():
    f = torch.tensor([0.0, 700.0, 4000.0], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(f)), f)
    assert float(hz_to_mel(torch.tensor(700.0))) == pytest.approx(2595 * math.log10(2))
    bank = mel_filterbank()
    assert bank.shape == (80, 257) and bank.min() >= 0 and bank.max() <= 1
    peaks = bank.argmax(dim=1)
    assert torch.all(peaks[1:] >= peaks[:-1]) and peaks[-1] > peaks[0]
    assert torch.all(bank.sum(dim=1) > 0)  # no empty band at this resolution
    with pytest.raises(XlsrError, match="fmin < fmax"):
        mel_filterbank(fmin=4000.0, fmax=3000.0)


def test_values_match_torch_stft_over_the_same_windows():
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(5000, generator=g, dtype=torch.float64)
    bank = mel_filterbank()
    # torch.stft centres the 400-sample window in its 512-sample frame: 56 zeros each side put frame t on the
    # samples 320 t ... 320 t + 399, as the CNN's frame t
    padded = torch.nn.functional.pad(wave, (56, 56))
    spec = torch.stft(padded, n_fft=512, hop_length=320, win_length=400,
                      window=torch.hann_window(400, dtype=wave.dtype), center=False, return_complex=True).abs().square()
    torch.testing.assert_close(log_mel(wave, floor=1e-3, bank=bank), torch.log(bank @ spec + 1e-3).T)


def test_a_tone_lands_in_its_band_and_silence_at_the_floor():
    t = torch.arange(16000) / 16000
    bank = mel_filterbank()
    frames = log_mel(torch.sin(2 * math.pi * 1000.0 * t))
    band = int(frames.mean(dim=0).argmax())
    centre_hz = float(torch.linspace(0, 8000, 257)[bank[band].argmax()])
    assert abs(centre_hz - 1000.0) < 100.0
    torch.testing.assert_close(log_mel(torch.zeros(800), floor=1e-2), torch.full((2, 80), math.log(1e-2),
                                                                                dtype=torch.float64))


def test_a_batch_is_refused():
    with pytest.raises(XlsrError, match=r"log_mel: expected one waveform of shape \(samples,\), got \(2, 800\)"):
        log_mel(torch.zeros(2, 800))
