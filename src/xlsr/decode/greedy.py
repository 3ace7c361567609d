"""Greedy (best-path) CTC decoding: argmax per frame, collapse repeats, drop blanks."""

from __future__ import annotations

import numpy as np
import torch

from xlsr.decode.hypothesis import Hypothesis
from xlsr.errors import XlsrError
from xlsr.model.ctc import ctc_best_path_segments
from xlsr.rates import FRAME_STRIDE_S
from xlsr.text.vocab import Vocabulary


def as_logits_tensor(logits, frame_lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check and convert (B,T,V) logits and (B,) frame lengths (None = all T) to CPU float tensors."""
    logits = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits)
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    if logits.dim() != 3:
        raise XlsrError(f"logits: expected shape (B, T, V), got {tuple(logits.shape)}")
    logits = logits.detach().to("cpu", torch.float32)
    B, T, _ = logits.shape
    if frame_lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    else:
        lengths = torch.as_tensor(frame_lengths).reshape(-1).to("cpu", torch.long)
        if lengths.numel() != B or bool((lengths < 0).any()) or bool((lengths > T).any()):
            raise XlsrError(f"frame_lengths: expected {B} values in [0, {T}], got {lengths.tolist()}")
    return logits, lengths


def greedy_decode(logits, frame_lengths=None, vocab: Vocabulary | None = None, *,
                  timestamps: bool = False, frame_stride_s: float = FRAME_STRIDE_S) -> list[Hypothesis]:
    """Best-path CTC decoding of logits (B,T,V) with frame lengths (B,); one Hypothesis per row.

    Without a vocabulary, tokens are the id strings. The score is the path's summed log-probability.
    """
    logits, lengths = as_logits_tensor(logits, frame_lengths)
    if vocab is not None and logits.shape[-1] != len(vocab):
        raise XlsrError(f"logits: {logits.shape[-1]} classes but the vocabulary has {len(vocab)} tokens")
    blank = vocab.blank_id if vocab is not None else 0
    logp = logits.log_softmax(-1)
    best_logp = logp.max(-1).values  # (B, T)
    hyps = []
    for b, (ids, starts, ends) in enumerate(ctc_best_path_segments(logp, lengths, blank)):
        n = int(lengths[b])
        tokens = [vocab.tokens[i] for i in ids] if vocab is not None else [str(i) for i in ids]
        text = vocab.join(tokens) if vocab is not None else " ".join(tokens)
        hyps.append(Hypothesis(
            tokens=tokens, token_ids=ids, text=text, score=float(best_logp[b, :n].sum()),
            frames=starts if timestamps else None,
            timestamps=[round(s * frame_stride_s, 6) for s in starts] if timestamps else None,
            end_frames=ends if timestamps else None,
            end_timestamps=[round(e * frame_stride_s, 6) for e in ends] if timestamps else None))
    return hyps
