"""The one audio loader: any file soundfile reads (wav, flac, ogg, mp3) -> 16 kHz mono float32."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from xlsr.errors import AudioError
from xlsr.rates import SAMPLE_RATE


def normalize_waveform(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-utterance zero mean, unit variance (what F.layer_norm(x, x.shape) does, as fairseq)."""
    x = x.astype(np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + eps)).astype(np.float32)


def load_audio(path: str | Path, *, sample_rate: int = SAMPLE_RATE, normalize: bool = False) -> np.ndarray:
    """Read `path`, mix to mono, resample to `sample_rate`: float32 (S,). AudioError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    return _decode(str(path), str(path), sample_rate, normalize)


def decode_audio(data: bytes, name: str, *, sample_rate: int = SAMPLE_RATE, normalize: bool = False) -> np.ndarray:
    """`load_audio` for an encoded file held in memory (e.g. a FLAC member of a shard); `name` for messages."""
    return _decode(io.BytesIO(data), name, sample_rate, normalize)


def _decode(source: str | io.BytesIO, name: str, sample_rate: int, normalize: bool) -> np.ndarray:
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"{name}: not a readable audio file ({str(exc).splitlines()[0][:120]})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: audio contains NaN or Inf samples")
    if rate != sample_rate:
        x = soxr.resample(x, rate, sample_rate).astype(np.float32, copy=False)
    if normalize:
        x = normalize_waveform(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def audio_num_samples(path: str | Path, *, sample_rate: int = SAMPLE_RATE) -> int:
    """Length of `path` in samples at `sample_rate`, from the header (exact for wav/flac, close for mp3)."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({str(exc).splitlines()[0][:120]})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    return int(round(info.frames * sample_rate / info.samplerate))
