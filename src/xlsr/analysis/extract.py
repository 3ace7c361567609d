"""Audio clips → codeword ids: the quantizer in eval mode (hard argmax, no Gumbel noise), in padded batches.

A language's clips are read, cut into pieces, and packed shortest first as the fine-tuning loader packs
(`pack_batches`), up to `max_batch_samples` of padded audio per forward pass. Each row
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
from xlsr.data.audio import load_audio
from xlsr.data.batching import pack_batches, pad_waveforms
from xlsr.errors import AudioError
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE

log = logging.getLogger(__name__)

# Longer clips are quantized in pieces to bound memory; 30 s is ~1,500 frames.
MAX_CHUNK_SAMPLES = 30 * SAMPLE_RATE
# Padded audio per forward pass (rows × longest row), as for transcription.
MAX_BATCH_SAMPLES = 60 * SAMPLE_RATE


def load_clip(clip: Clip, *, normalize: bool) -> np.ndarray:
    """The clip's samples as float32 (S,), through the project's one audio loader."""
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
    x, lengths = pad_waveforms(pieces)
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
    owners, pieces, read = [], [], 0  # owners[j]: the clip of pieces[j]; a clip's pieces stay in order
    for k, clip in enumerate(clips):
        try:
            waveform = load_clip(clip, normalize=normalize)
        except AudioError as exc:
            log.warning("skipping bad audio: %s", exc)
            continue
        read += waveform.shape[0]
        for piece in waveform_pieces(waveform, min_samples=min_samples, max_chunk_samples=max_chunk_samples):
            owners.append(k)
            pieces.append(piece)
    codes: list[np.ndarray | None] = [None] * len(pieces)
    # The fine-tuning loader's packing: shortest first, B x longest <= max_batch_samples.
    lengths = np.array([p.shape[0] for p in pieces], dtype=np.int64)
    for batch in pack_batches(lengths, np.arange(len(pieces)), max_batch_samples, crop_to_shortest=False):
        for j, piece_codes in zip(batch, quantize_batch(model, [pieces[j] for j in batch], device=device)):
            codes[j] = piece_codes
    bar.update(len(clips))
    by_clip: dict[int, list[np.ndarray]] = {}
    for k, c in zip(owners, codes):
        by_clip.setdefault(k, []).append(c)
    return [np.concatenate(by_clip[k]) for k in sorted(by_clip)], read
