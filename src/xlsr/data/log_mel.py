"""The input's log-mel spectrum, frame for frame with the CNN: what a feature's effective dimension compares with.

A wav2vec 2.0 CNN turns 25 ms of audio every 20 ms into one feature vector. The log-mel spectrum over the same
windows (400 samples every 320, 80 mel bands from 20 to 7600 Hz, the usual speech range just below the 8 kHz
Nyquist limit) is the classic description of that audio; its effective dimension
says how many directions the audio itself varies in, a reference for the CNN features' own (model/feature_health).
Pure functions of a waveform; float64 out, like model/feature_health.
"""

from __future__ import annotations

import torch

from xlsr.errors import XlsrError
from xlsr.rates import FRAME_STRIDE_SAMPLES, SAMPLE_RATE

N_FFT = 512
WINDOW_SAMPLES = 400  # 25 ms, the CNN's receptive field
N_MELS = 80
LOG_FLOOR = 1e-3  # added to the mel power before the log


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """The mel scale 2595 log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int = N_FFT, n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE, fmin: float = 20.0,
                   fmax: float = 7600.0) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters of peak 1, their centres equally spaced on the mel scale."""
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise XlsrError(f"mel filterbank: need 0 <= fmin < fmax <= {sample_rate / 2:g} Hz, got {fmin:g} and {fmax:g}")
    mels = torch.linspace(float(hz_to_mel(torch.tensor(fmin))), float(hz_to_mel(torch.tensor(fmax))), n_mels + 2)
    edges = mel_to_hz(mels.double())
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return ((freqs - low) / (centre - low)).minimum((high - freqs) / (high - centre)).clamp_min(0.0)


def num_frames(num_samples: int) -> int:
    """Frames of `num_samples` audio: one per 320 samples whose 400-sample window fits (0 if none does)."""
    return 0 if num_samples < WINDOW_SAMPLES else 1 + (num_samples - WINDOW_SAMPLES) // FRAME_STRIDE_SAMPLES


def log_mel(waveform: torch.Tensor, floor: float = LOG_FLOOR, bank: torch.Tensor | None = None) -> torch.Tensor:
    """(num_frames(S), n_mels) float64 log(mel power + floor) of a (S,) waveform: Hann windows of 400 samples
    every 320 (no padding at the edges, so frame t covers the same samples as the CNN's frame t)."""
    if waveform.dim() != 1:
        raise XlsrError(f"log_mel: expected one waveform of shape (samples,), got {tuple(waveform.shape)}")
    bank = mel_filterbank() if bank is None else bank
    wave = waveform.detach().to("cpu", torch.float64)
    if num_frames(wave.numel()) == 0:
        return torch.empty(0, bank.shape[0], dtype=torch.float64)
    windows = wave.unfold(0, WINDOW_SAMPLES, FRAME_STRIDE_SAMPLES) * torch.hann_window(WINDOW_SAMPLES, periodic=True,
                                                                                       dtype=torch.float64)
    power = torch.fft.rfft(windows, n=(bank.shape[1] - 1) * 2).abs().square()  # (T, n_fft // 2 + 1)
    return torch.log(power @ bank.T + floor)
