"""Audio clips → codeword ids: the quantizer in eval mode (hard argmax, no Gumbel noise), one clip at a time.

Clips go through the model one by one: batching would pad them, and padding changes the outputs of
the group-norm feature encoder (wav2vec 2.0 Base, fairseq#3227), so single clips keep the codes exact.
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


def load_clip(clip: Clip, *, normalize: bool) -> np.ndarray:
    """The clip's samples as float32 (S,), through the project's one audio loader."""
    from xlsr.data.audio import load_audio

    audio = load_audio(clip.utterance.audio, normalize=normalize)
    return audio[: clip.num_samples]


@torch.inference_mode()
def quantize_waveform(model: torch.nn.Module, waveform: np.ndarray, *, device: torch.device,
                      min_samples: int = 400, max_chunk_samples: int = MAX_CHUNK_SAMPLES) -> np.ndarray:
    """(T, G) group indices of one waveform, in chunks of at most `max_chunk_samples`."""
    pieces = []
    for start in range(0, waveform.shape[0], max_chunk_samples):
        chunk = waveform[start : start + max_chunk_samples]
        if chunk.shape[0] < min_samples:
            continue  # shorter than the receptive field: no frame
        x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)[None]  # (1, S)
        lengths = torch.tensor([chunk.shape[0]], device=device)
        codes, frame_lengths = model.quantize(x, lengths)  # (1, T, G), (1,)
        pieces.append(codes[0, : int(frame_lengths[0])].cpu().numpy())
    if not pieces:
        return np.zeros((0, 0), dtype=np.int64)
    return np.concatenate(pieces).astype(np.int64)


def extract_codeword_ids(model: torch.nn.Module, clips: dict[str, list[Clip]], *, num_codevectors_per_group: int,
                         normalize: bool, device: torch.device, min_samples: int = 400,
                         show_progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Codeword ids of every frame of every language's clips, and the samples actually read per language.

    An unreadable clip is logged and skipped; its language then counts fewer samples.
    """
    model.eval()
    total = sum(len(c) for c in clips.values())
    bar = progress(total=total, desc="quantize", unit="utt", disable=not show_progress)
    ids: dict[str, np.ndarray] = {}
    samples: dict[str, int] = {}
    try:
        for lang, lang_clips in clips.items():
            frames, samples[lang] = [], 0
            for clip in lang_clips:
                bar.set_postfix_str(lang, refresh=False)
                try:
                    waveform = load_clip(clip, normalize=normalize)
                except AudioError as exc:
                    log.warning("skipping bad audio: %s", exc)
                    bar.update(1)
                    continue
                samples[lang] += waveform.shape[0]
                codes = quantize_waveform(model, waveform, device=device, min_samples=min_samples)
                if codes.size:
                    frames.append(codeword_ids(codes, num_codevectors_per_group))
                bar.update(1)
            ids[lang] = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int64)
    finally:
        bar.close()
    return ids, samples
