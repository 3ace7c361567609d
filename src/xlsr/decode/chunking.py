"""Long-audio inference: overlapping windows, batched through the model, merged back by time.

Window k starts at frame k × step (a multiple of the 320-sample frame stride, so its frames line
up with the frames of the whole recording). Each window carries `stride_s` of context on both
sides; only its central frames are kept and each seam falls in the middle of an overlap, so every
kept frame sees at least `stride_s` of real audio on each side (user need 10). With a model whose
receptive field fits in that context, the merged logits equal the unchunked ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from xlsr.errors import XlsrError
from xlsr.rates import FRAME_STRIDE_SAMPLES, RECEPTIVE_FIELD_SAMPLES, SAMPLE_RATE

LogitsFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Window:
    """One chunk: samples [start, stop) of the recording; frames [keep_from, keep_to) of its output
    are kept, and its frame 0 is frame `first_frame` of the recording."""

    start: int
    stop: int
    first_frame: int
    keep_from: int
    keep_to: int | None  # None: up to the window's last frame (the final window)


# The shortest window the option checks accept. Windows are whole frames (rounded) and so is their context (at
# most a quarter of the window, also rounded): from 3 frames on, every window keeps at least one frame whatever the
# stride; 2.5 frames (0.05 s) rounds to 2 with 1 frame of context each side, which keeps none.
MIN_CHUNK_FRAMES = 3


def check_chunk_seconds(chunk_s: float, option: str = "--chunk-seconds", *, sample_rate: int = SAMPLE_RATE,
                        frame_samples: int = FRAME_STRIDE_SAMPLES) -> None:
    """XlsrError naming `option` when a window of `chunk_s` seconds is shorter than MIN_CHUNK_FRAMES frames
    (checked with the other options, before the model is loaded, rather than failing on the first long file)."""
    frames = chunk_s * sample_rate / frame_samples
    if frames < MIN_CHUNK_FRAMES:
        frame_ms = 1000 * frame_samples / sample_rate
        raise XlsrError(f"{option}: {chunk_s:g} s is {frames:g} frame(s) of {frame_ms:g} ms; a window must be at "
                        f"least {MIN_CHUNK_FRAMES} frames ({MIN_CHUNK_FRAMES * frame_samples / sample_rate:g} s)")


def window_context(chunk_s: float, stride_s: float) -> float:
    """The context each side of a window gets: the stride asked for, at most a quarter of the window (so that at
    least half of every window's frames are kept). Long files (`xlsr transcribe`) and streams use the same."""
    return min(stride_s, chunk_s / 4)


def plan_windows(num_samples: int, *, chunk_s: float, stride_s: float, sample_rate: int = SAMPLE_RATE,
                 frame_samples: int = FRAME_STRIDE_SAMPLES, receptive_field: int = RECEPTIVE_FIELD_SAMPLES
                 ) -> list[Window]:
    """The windows covering `num_samples`: `chunk_s` long, `stride_s` of context on each side, for a CNN of
    `frame_samples` between frames and `receptive_field` samples per frame (the model's: 320 and 400 for the
    standard CNN)."""
    chunk = round(chunk_s * sample_rate / frame_samples)     # frames per window
    context = round(stride_s * sample_rate / frame_samples)  # frames of context per side
    step = chunk - 2 * context
    if chunk <= 0 or context < 0 or step <= 0:
        # in frames, as computed: in seconds a 0.05 s chunk is longer than twice a 0.0125 s stride, yet rounded
        # to frames (2, and 1 each side) it keeps none
        raise XlsrError(f"chunking: a window of {chunk_s:g} s is {chunk} frame(s), and {context} frame(s) of "
                        f"context on each side ({stride_s:g} s) leave none to keep; give a longer window or a "
                        f"shorter stride")
    # Enough samples for `chunk` frames: the last frame's receptive field, at least two strides (the standard CNN's
    # 400 samples round up to 640, one frame more than `chunk` strides: the windows xlsr always cut)
    window_samples = (chunk - 1) * frame_samples + max(receptive_field, 2 * frame_samples)
    if num_samples <= window_samples:
        return [Window(0, num_samples, 0, 0, None)]
    windows = []
    k = 0
    while True:
        first = k * step
        start = first * frame_samples
        stop = min(start + window_samples, num_samples)
        if 0 < num_samples - stop < receptive_field:
            stop = num_samples  # a tail too short for a frame of its own (no context, stride 0) joins this window
        last = stop == num_samples
        keep_from = 0 if k == 0 else context
        windows.append(Window(start, stop, first, keep_from, None if last else context + step))
        if last:
            return windows
        k += 1


def chunked_logits(waveform, logits_fn: LogitsFn, *, chunk_s: float = 20.0, stride_s: float = 2.0,
                   batch_size: int = 8, sample_rate: int = SAMPLE_RATE,
                   frame_samples: int = FRAME_STRIDE_SAMPLES, receptive_field: int = RECEPTIVE_FIELD_SAMPLES,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Frame logits (T, V) of one long waveform (S,), computed in overlapping windows.

    `logits_fn(waveforms (B, S), lengths (B,)) -> (logits (B, T, V), frame_lengths (B,))` is called
    on up to `batch_size` windows at a time; windows in one call have equal length, so no padding
    reaches the model. Windows are sent to `device` (default: the device of `logits_fn` when it is
    a module or a bound method of one, else the CPU). Returns float32 logits on the CPU. `frame_samples` and
    `receptive_field` are the model's CNN's (`config.total_stride`, `config.receptive_field`); a model that gives
    another number of frames for a window is refused, since its frames would be merged at the wrong times.
    """
    wave = torch.as_tensor(np.asarray(waveform) if not torch.is_tensor(waveform) else waveform)
    if wave.dim() != 1:
        raise XlsrError(f"chunking: expected one waveform of shape (S,), got {tuple(wave.shape)}")
    if batch_size < 1:
        raise XlsrError(f"chunking: batch size must be at least 1, got {batch_size}")
    wave = wave.float()
    device = torch.device(device) if device is not None else _device_of(logits_fn)
    windows = plan_windows(wave.numel(), chunk_s=chunk_s, stride_s=stride_s, sample_rate=sample_rate,
                           frame_samples=frame_samples, receptive_field=receptive_field)
    pieces: list[torch.Tensor] = []
    # Group consecutive equal-length windows (all but possibly the last) into batches.
    i = 0
    while i < len(windows):
        size = windows[i].stop - windows[i].start
        j = i
        while j < len(windows) and j - i < batch_size and windows[j].stop - windows[j].start == size:
            j += 1
        batch = torch.stack([wave[w.start:w.stop] for w in windows[i:j]])
        lengths = torch.full((j - i,), size, dtype=torch.long)
        with torch.inference_mode():
            logits, frame_lengths = logits_fn(batch.to(device), lengths.to(device))
        logits = logits.detach().to("cpu", torch.float32)
        for b, w in enumerate(windows[i:j]):
            n = int(frame_lengths[b])
            expected = (size - receptive_field) // frame_samples + 1
            if n != expected:
                raise XlsrError(f"chunking: the model gave {n} frames for {size} samples where a CNN of stride "
                                f"{frame_samples} and receptive field {receptive_field} samples gives {expected}; "
                                f"give chunking the model's own (config.total_stride, config.receptive_field)")
            keep_to = n if w.keep_to is None else w.keep_to
            pieces.append(logits[b, w.keep_from:keep_to])
        i = j
    return torch.cat(pieces, dim=0)


def _device_of(fn) -> torch.device:
    """The device of a module (or a bound method of one); CPU for plain functions."""
    module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    if isinstance(module, torch.nn.Module):
        for p in module.parameters():
            return p.device
    return torch.device("cpu")
