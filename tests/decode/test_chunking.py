import pytest
import torch
from torch import nn

from xlsr.decode.chunking import chunked_logits, plan_windows
from xlsr.errors import XlsrError


class TinyLocalModel(nn.Module):
    """wav2vec 2.0's CNN strides (320 samples per frame, 400-sample receptive field) + two frame
    convolutions (±4 frames of context): a deterministic stand-in with a limited receptive field."""

    def __init__(self, vocab_size=6):
        super().__init__()
        torch.manual_seed(0)
        layers, dim_in = [], 1
        for kernel, stride in [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2:
            layers += [nn.Conv1d(dim_in, 8, kernel, stride), nn.GELU()]
            dim_in = 8
        self.cnn = nn.Sequential(*layers)
        self.context = nn.Sequential(nn.Conv1d(8, 8, 5, padding=2), nn.GELU(), nn.Conv1d(8, 8, 5, padding=2))
        self.head = nn.Linear(8, vocab_size)

    def forward(self, waveforms, lengths):
        x = self.context(self.cnn(waveforms[:, None]))  # (B, C, T)
        frame_lengths = torch.div(lengths - 400, 320, rounding_mode="floor") + 1
        return self.head(x.transpose(1, 2)), frame_lengths


@pytest.fixture(scope="module")
def model():
    return TinyLocalModel().eval()


@pytest.fixture(scope="module")
def wave():
    return torch.randn(16000 * 2 + 123, generator=torch.Generator().manual_seed(1))


def _unchunked(model, wave):
    with torch.no_grad():
        logits, n = model(wave[None], torch.tensor([wave.numel()]))
    return logits[0, : int(n[0])]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_chunked_equals_unchunked(model, wave, batch_size):
    full = _unchunked(model, wave)
    merged = chunked_logits(wave, model, chunk_s=0.8, stride_s=0.16, batch_size=batch_size)
    assert merged.shape == full.shape
    torch.testing.assert_close(merged, full, atol=1e-5, rtol=1e-5)


def test_without_context_the_seams_differ(model, wave):
    full = _unchunked(model, wave)
    merged = chunked_logits(wave, model, chunk_s=0.8, stride_s=0.0)
    assert merged.shape == full.shape
    assert not torch.allclose(merged, full, atol=1e-4)


def test_short_audio_is_one_window(model):
    short = torch.randn(5000, generator=torch.Generator().manual_seed(2))
    assert len(plan_windows(short.numel(), chunk_s=1.0, stride_s=0.2)) == 1
    torch.testing.assert_close(chunked_logits(short, model, chunk_s=1.0, stride_s=0.2), _unchunked(model, short))


def test_windows_tile_the_frames():
    windows = plan_windows(16000 * 10, chunk_s=2.0, stride_s=0.5)
    assert windows[0].start == 0 and windows[-1].stop == 160000
    for prev, nxt in zip(windows, windows[1:]):
        assert prev.first_frame + prev.keep_to == nxt.first_frame + nxt.keep_from  # seams meet
        assert nxt.start % 320 == 0 and nxt.start < prev.stop  # windows overlap, frame-aligned


@pytest.mark.parametrize("stride_s", [0.0, 0.1])
def test_every_window_yields_frames_and_they_are_the_recordings(stride_s):
    # without context (stride 0) a tail of 1-399 samples after a whole window would hear no frame of its own
    for num_samples in range(48000, 48000 + 2 * 320 + 1, 7):
        windows = plan_windows(num_samples, chunk_s=1.0, stride_s=stride_s)
        assert all(w.stop - w.start >= 400 for w in windows)
        kept = []
        for w in windows:
            frames = (w.stop - w.start - 400) // 320 + 1
            stop = frames if w.keep_to is None else w.keep_to
            assert stop <= frames
            kept += range(w.first_frame + w.keep_from, w.first_frame + stop)
        assert kept == list(range((num_samples - 400) // 320 + 1))  # each frame once, in order


def test_bad_chunk_settings_raise():
    with pytest.raises(XlsrError, match="chunk"):
        plan_windows(100000, chunk_s=1.0, stride_s=0.5)
    with pytest.raises(XlsrError, match="shape"):
        chunked_logits(torch.zeros(2, 100), lambda w, n: (w, n))
