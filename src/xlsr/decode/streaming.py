"""Transcription of audio as it arrives (a microphone, a stream): text that is final as soon as it can be.

wav2vec 2.0's Transformer attends over the whole input, so no frame is final until audio after it has been heard.
The stream is cut into the windows `xlsr transcribe` uses for long recordings (decode/chunking.py: `chunk_s` long,
`stride_s` of context on each side, only the central frames kept): a window runs as soon as the audio after it
has begun to arrive, its kept frames are final, and their greedy CTC tokens are emitted. Text therefore lags the
audio by `chunk_s - stride_s` seconds at most, plus the wait for the piece of audio that completes a window,
except at the stream's start: the first window keeps its frames from 0 on, so the first words wait for the whole
first window (`chunk_s`). At the end of the stream the last windows run and the rest is emitted. For a model that
does not normalize its input the logits of the whole stream are then those `chunked_logits` gives the whole
recording, so an LM beam search can rescore them (`logits`, kept when asked: `keep_logits=True`).

A stream may run for days, so what the transcriber holds does not grow with it: the audio that windows still to run
read (about one window), and the windows are planned from the next one's start. Only the transcript grows (`tokens`
and `starts`, some 50 bytes a token), and the logits when kept (50 frames a second of vocabulary-sized rows: 23 MB
an hour for 32 tokens).

A model that normalizes its input (XLSR, XLS-R, MMS: per-utterance zero mean, unit variance) sees each window
normalized on its own: a stream has no utterance statistics until it ends, whereas `xlsr transcribe` normalizes a
whole file before cutting it into windows, so for such models the two differ slightly. Windows of 10 s or more
are as long as the crops such models were pretrained on.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from xlsr.data.audio import normalize_waveform
from xlsr.decode.chunking import Window, check_chunk_seconds, plan_windows, window_context
from xlsr.decode.transcribe import CTCModel
from xlsr.errors import XlsrError
from xlsr.rates import SAMPLE_RATE


class StreamingTranscriber:
    """Feed samples (16 kHz mono float) as they come; each call returns the tokens that became final."""

    def __init__(self, ctc: CTCModel, *, chunk_s: float = 10.0, stride_s: float = 2.0, keep_logits: bool = False):
        if chunk_s <= 0 or stride_s < 0:
            raise XlsrError(f"streaming: the window must be longer than 0 s and the stride at least 0 s, got "
                            f"{chunk_s:g} and {stride_s:g}")
        # the model's CNN: samples between frames and samples per frame (320 and 400 for the standard one)
        self._frame_samples, self._receptive_field = ctc.model.config.total_stride, ctc.model.config.receptive_field
        check_chunk_seconds(chunk_s, "streaming: the window", frame_samples=self._frame_samples)  # not at feed()
        # the windows of `xlsr transcribe` for a long file of the same settings (the stride at most chunk / 4)
        self.ctc, self.chunk_s, self.stride_s = ctc, chunk_s, window_context(chunk_s, stride_s)
        # the stream from sample `_offset` on, where the next window to run starts (older audio is done)
        self._audio = np.zeros(0, dtype=np.float32)
        self._offset = 0
        self._logits: list[torch.Tensor] | None = [] if keep_logits else None  # final logits, in order
        self._frames = 0  # final frames so far
        self._prev_id: int | None = None  # the last final frame's argmax (CTC merges a repeat across pieces)
        self.tokens: list[str] = []
        self.starts: list[float] = []  # each token's start, seconds
        self.finished = False

    @property
    def text(self) -> str:
        """The final text so far."""
        return self.ctc.vocab.join(self.tokens)

    @property
    def seconds_heard(self) -> float:
        """Audio fed so far, in seconds."""
        return (self._offset + len(self._audio)) / SAMPLE_RATE

    def feed(self, samples) -> list[str]:
        """Add audio; run every window that is complete and not the last; the tokens that became final."""
        if self.finished:
            raise XlsrError("streaming: the stream has ended (finish() was called)")
        samples = np.asarray(samples, dtype=np.float32)
        # a (S, 2) block (what sf.read or a sound card gives for stereo) flattened would interleave the channels:
        # twice the duration of garbage, with no error
        if samples.ndim != 1:
            raise XlsrError(f"streaming: expected mono samples of shape (S,), got {samples.shape}; mix the "
                            f"channels first (e.g. samples.mean(axis=1))")
        self._audio = np.concatenate([self._audio, samples])
        # every window but the last is whole, and stays so as audio arrives
        windows = self._plan()
        new: list[str] = []
        for window, after in zip(windows, windows[1:]):
            new += self._run(window)
            # no later window reads audio before the next one's start; dropped window by window, so that a stop in
            # the middle (Ctrl-C) leaves a stream that finish() completes
            drop = after.start - self._offset
            self._audio, self._offset = self._audio[drop:], after.start
        return new

    def finish(self) -> list[str]:
        """End of the stream: run the remaining windows; the last tokens."""
        if self.finished:
            return []
        self.finished = True
        if self._offset + len(self._audio) < self._receptive_field:
            return []  # shorter than one frame: nothing to hear
        new: list[str] = []
        for window in self._plan():
            new += self._run(window)
        return new

    def _plan(self) -> list[Window]:
        """The windows from the next one to run on, in samples and frames of the whole stream. Planned over the audio
        kept, which begins at that window's start, so a feed costs the same however long the stream has run."""
        first_frame = self._offset // self._frame_samples
        return [replace(w, start=self._offset + w.start, stop=self._offset + w.stop,
                        first_frame=first_frame + w.first_frame)
                for w in plan_windows(len(self._audio), chunk_s=self.chunk_s, stride_s=self.stride_s,
                                      frame_samples=self._frame_samples, receptive_field=self._receptive_field)]

    @property
    def logits(self) -> torch.Tensor:
        """The final frames' logits (T, V) so far; after finish(), those of the whole stream (with keep_logits)."""
        if self._logits is None:
            raise XlsrError("streaming: the logits were not kept; make the StreamingTranscriber with keep_logits=True")
        if not self._logits:
            return torch.zeros(0, len(self.ctc.vocab))
        return torch.cat(self._logits)

    def _run(self, w: Window) -> list[str]:
        """Run one window; its frames after those already final become final."""
        piece = self._audio[w.start - self._offset:w.stop - self._offset]
        wave = torch.from_numpy(normalize_waveform(piece) if self.ctc.normalize else piece.copy())
        logits, frames = self.ctc.logits(wave[None].to(self.ctc.device), torch.tensor([wave.numel()]))
        n = int(frames[0])
        # the frames before `_frames` were kept from earlier windows (for the first window planned from a later
        # window's start, its context); a window run again after a stop keeps nothing twice
        keep = logits[0, self._frames - w.first_frame: n if w.keep_to is None else w.keep_to].float().cpu()
        if self._logits is not None:
            self._logits.append(keep)
        return self._emit(keep)

    def _emit(self, logits: torch.Tensor) -> list[str]:
        """Greedy CTC over newly final frames, merging a repeat with the frame before them."""
        vocab, new, starts, prev = self.ctc.vocab, [], [], self._prev_id
        for t, idx in enumerate(logits.argmax(-1).tolist()):
            if idx != prev and idx != vocab.blank_id:
                new.append(vocab.tokens[idx])
                starts.append(round((self._frames + t) * self._frame_samples / SAMPLE_RATE, 6))
            prev = idx
        self._prev_id = prev
        self._frames += logits.shape[0]
        self.tokens += new
        self.starts += starts
        return new
