"""Audio clips → codeword ids: the quantizer in eval mode (hard argmax, no Gumbel noise), in padded batches.

A language's clips are chosen and read (`iter_clips`: an unreadable one is replaced by the next utterances in
the seeded order), cut into pieces, and packed shortest first as the fine-tuning loader packs
(`pack_batches`), up to `max_batch_samples` of padded audio per forward pass. Clips are read READ_AHEAD_SAMPLES
at a time, quantized, counted and dropped: an analysis of hundreds of hours holds minutes of audio and one count per
codeword, not every sample (230 MB an hour of float32) nor every frame's code. Each row
carries its length, and the model honours it in both CNN modes (the group-norm CNN normalizes layer 0 over
each row's valid steps), so a clip gets the codes it gets alone (features agree to ~1e-6; only an argmax
near-tie could flip). Clips longer than `max_chunk_samples` are quantized in pieces, each piece its own row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

from xlsr.analysis.codebook import Tally, codeword_ids, tally_codewords
from xlsr.analysis.selection import Clip, iter_clips
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
# Audio read before it is quantized and dropped (10 minutes: 38 MB of float32, and a longer clip alone): enough
# clips for shortest-first packing to fill its batches.
READ_AHEAD_SAMPLES = 10 * MAX_BATCH_SAMPLES


def load_clip(clip: Clip, *, normalize: bool) -> np.ndarray:
    """The clip's samples as float32 (S,), through the project's one audio loader."""
    audio = load_audio(clip.utterance.audio, normalize=normalize)
    return audio[: clip.num_samples]


def read_clip(clip: Clip, *, normalize: bool) -> Clip | None:
    """The clip with its audio (as long as the file holds, at most `num_samples`), or None (logged) if unreadable."""
    try:
        audio = load_clip(clip, normalize=normalize)
    except AudioError as exc:
        log.warning("skipping bad audio (the next utterance takes its place): %s", exc)
        return None
    return Clip(clip.utterance, audio.shape[0], audio)


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


def extract_codeword_counts(model: torch.nn.Module, utts: dict[str, Sequence], seconds: float, *, seed: int,
                            num_codevectors_per_group: int, normalize: bool, device: torch.device,
                            min_samples: int = 400, max_batch_samples: int = MAX_BATCH_SAMPLES,
                            max_chunk_samples: int = MAX_CHUNK_SAMPLES, show_progress: bool = True
                            ) -> tuple[dict[str, Tally], dict[str, list[Clip]]]:
    """How often each codeword occurs in `seconds` of each language's audio (`iter_clips`: a Tally per language),
    and the clips read per language (without their audio).

    An unreadable utterance is logged and skipped, and the next ones in the seeded order take its place.
    """
    model.eval()
    bar = progress(total=len(utts), desc="quantize", unit="lang", disable=not show_progress)
    tallies: dict[str, Tally] = {}
    clips: dict[str, list[Clip]] = {}
    quantize = partial(_clip_codes, model, device=device, min_samples=min_samples,
                       max_batch_samples=max_batch_samples, max_chunk_samples=max_chunk_samples)
    try:
        for lang, lang_utts in utts.items():
            bar.set_postfix_str(lang, refresh=False)
            tally = tally_codewords(np.zeros(0, dtype=np.int64))
            clips[lang], read, held = [], [], 0
            for clip in iter_clips(lang_utts, seconds, seed=seed, min_samples=min_samples,
                                   read=partial(read_clip, normalize=normalize)):
                clips[lang].append(Clip(clip.utterance, clip.num_samples))  # the audio is not kept past its codes
                read.append(clip)
                held += clip.num_samples
                if held >= READ_AHEAD_SAMPLES:
                    tally = _tally_clips(quantize(read), num_codevectors_per_group, tally)
                    read, held = [], 0
            tallies[lang] = _tally_clips(quantize(read), num_codevectors_per_group, tally) if read else tally
            bar.update(1)
    finally:
        bar.close()
    return tallies, clips


def _tally_clips(codes: list[np.ndarray], num_codevectors_per_group: int, tally: Tally) -> Tally:
    """`tally` with the codewords of the clips' (T_k, G) group indices added (at once: a merge per clip would cost a
    pass over the tally each)."""
    ids = [codeword_ids(c, num_codevectors_per_group) for c in codes if c.size]
    return tally_codewords(np.concatenate(ids), tally) if ids else tally


def _clip_codes(model: torch.nn.Module, clips: list[Clip], *, device: torch.device, min_samples: int,
                max_batch_samples: int, max_chunk_samples: int) -> list[np.ndarray]:
    """(T_k, G) group indices of each clip (read: its `audio` set), in clip order."""
    owners, pieces = [], []  # owners[j]: the clip of pieces[j]; a clip's pieces stay in order
    for k, clip in enumerate(clips):
        for piece in waveform_pieces(clip.audio, min_samples=min_samples, max_chunk_samples=max_chunk_samples):
            owners.append(k)
            pieces.append(piece)
    codes: list[np.ndarray | None] = [None] * len(pieces)
    # The fine-tuning loader's packing: shortest first, B x longest <= max_batch_samples.
    lengths = np.array([p.shape[0] for p in pieces], dtype=np.int64)
    for batch in pack_batches(lengths, np.arange(len(pieces)), max_batch_samples, crop_to_shortest=False):
        for j, piece_codes in zip(batch, quantize_batch(model, [pieces[j] for j in batch], device=device)):
            codes[j] = piece_codes
    by_clip: dict[int, list[np.ndarray]] = {}
    for k, c in zip(owners, codes):
        by_clip.setdefault(k, []).append(c)
    return [np.concatenate(by_clip[k]) for k in sorted(by_clip)]
