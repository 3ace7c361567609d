"""Audio clips → codeword ids: the quantizer in eval mode (hard argmax, no Gumbel noise), in padded batches.

A language's clips are sorted by length and batched up to `max_batch_samples` of padded audio. Each row
carries its length, and the model honours it in both CNN modes (the group-norm CNN normalizes layer 0 over
each row's valid steps), so a clip gets the codes it gets alone (features agree to ~1e-6; only an argmax
near-tie could flip). Clips longer than `max_chunk_samples` are quantized in pieces, each piece its own row.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from xlsr.analysis.codebook import codeword_ids
from xlsr.analysis.selection import Clip
from xlsr.errors import AudioError
from xlsr.progress import progress

log = logging.getLogger(__name__)

# Longer clips are quantized in pieces to bound memory; 30 s is ~1,500 frames.
MAX_CHUNK_SAMPLES = 30 * 16000
# Padded audio per forward pass (rows × longest row), as for transcription.
MAX_BATCH_SAMPLES = 60 * 16000


def load_clip(clip: Clip, *, normalize: bool) -> np.ndarray:
    """The clip's samples as float32 (S,), through the project's one audio loader."""
    from xlsr.data.audio import load_audio

    audio = load_audio(clip.utterance.audio, normalize=normalize)
    return audio[: clip.num_samples]


def waveform_pieces(waveform: np.ndarray, *, min_samples: int = 400,
                    max_chunk_samples: int = MAX_CHUNK_SAMPLES) -> list[np.ndarray]:
    """Consecutive pieces of at most `max_chunk_samples`; a last piece shorter than `min_samples` gives no
    frame and is dropped."""
    starts = range(0, waveform.shape[0], max_chunk_samples)
    pieces = [waveform[start : start + max_chunk_samples] for start in starts]
    return [p for p in pieces if p.shape[0] >= min_samples]


@torch.inference_mode()
def quantize_batch(model: torch.nn.Module, pieces: list[np.ndarray], *, device: torch.device) -> list[np.ndarray]:
    """(T_i, G) group indices of each waveform piece, from one zero-padded batch with its lengths."""
    lengths = torch.tensor([p.shape[0] for p in pieces])
    x = torch.zeros(len(pieces), int(lengths.max()))
    for i, p in enumerate(pieces):
        x[i, : p.shape[0]] = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
    codes, frame_lengths = model.quantize(x.to(device), lengths.to(device))  # (B, T, G), (B,)
    codes = codes.cpu().numpy().astype(np.int64)
    return [codes[i, :n] for i, n in enumerate(frame_lengths.cpu().tolist())]


def extract_codeword_ids(model: torch.nn.Module, clips: dict[str, list[Clip]], *, num_codevectors_per_group: int,
                         normalize: bool, device: torch.device, min_samples: int = 400,
                         max_batch_samples: int = MAX_BATCH_SAMPLES, max_chunk_samples: int = MAX_CHUNK_SAMPLES,
                         show_progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Codeword ids of every frame of every language's clips (in clip order), and the samples read per language.

    An unreadable clip is logged and skipped; its language then counts fewer samples.
    """
    model.eval()
    total = sum(len(c) for c in clips.values())
    bar = progress(total=total, desc="quantize", unit="utt", disable=not show_progress)
    ids: dict[str, np.ndarray] = {}
    samples: dict[str, int] = {}
    try:
        for lang, lang_clips in clips.items():
            bar.set_postfix_str(lang, refresh=False)
            codes, samples[lang] = _clip_codes(model, lang_clips, normalize=normalize, device=device,
                                               min_samples=min_samples, max_batch_samples=max_batch_samples,
                                               max_chunk_samples=max_chunk_samples, bar=bar)
            frames = [codeword_ids(c, num_codevectors_per_group) for c in codes if c.size]
            ids[lang] = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int64)
    finally:
        bar.close()
    return ids, samples


def _clip_codes(model: torch.nn.Module, clips: list[Clip], *, normalize: bool, device: torch.device,
                min_samples: int, max_batch_samples: int, max_chunk_samples: int, bar
                ) -> tuple[list[np.ndarray], int]:
    """(T_k, G) group indices of each readable clip, in clip order, and the samples read."""
    codes: dict[int, list[np.ndarray]] = {}  # clip position -> codes of its pieces, in order
    pending: list[tuple[int, np.ndarray]] = []  # (clip position, piece)
    queued = 0  # clips whose every piece is in `pending` or already quantized
    read = 0

    def flush() -> None:
        nonlocal queued
        if pending:
            for (k, _), piece_codes in zip(pending, quantize_batch(model, [p for _, p in pending], device=device)):
                codes[k].append(piece_codes)
            pending.clear()
        bar.update(queued)
        queued = 0

    # Shortest first: the rows of a batch have similar lengths, so little of it is padding.
    for k in sorted(range(len(clips)), key=lambda k: clips[k].num_samples):
        try:
            waveform = load_clip(clips[k], normalize=normalize)
        except AudioError as exc:
            log.warning("skipping bad audio: %s", exc)
            bar.update(1)
            continue
        read += waveform.shape[0]
        codes[k] = []
        for piece in waveform_pieces(waveform, min_samples=min_samples, max_chunk_samples=max_chunk_samples):
            longest = max([piece.shape[0]] + [p.shape[0] for _, p in pending])
            if pending and longest * (len(pending) + 1) > max_batch_samples:
                flush()
            pending.append((k, piece))
        queued += 1
    flush()
    no_frames = np.zeros((0, 0), dtype=np.int64)
    return [np.concatenate(codes[k]) if codes[k] else no_frames for k in sorted(codes)], read
