"""CTC as pure functions: the fine-tuning loss and best-path (greedy) decoding; blank is id 0."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xlsr.errors import XlsrError


def ctc_loss(logits: torch.Tensor, frame_lengths: torch.Tensor, labels: torch.Tensor,
             label_lengths: torch.Tensor | None) -> torch.Tensor:
    """CTC in fp32, blank 0, mean over the batch of per-target-length losses, zero_infinity.

    logits (B, T, V); labels (B, L) padded with 0 or negatives past label_lengths (inferred as the count of
    labels > 0 when None).
    """
    B = logits.shape[0]
    if labels.dim() != 2 or labels.shape[0] != B:
        raise XlsrError(f"labels: expected shape ({B}, max_label_length), got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise XlsrError(f"labels: expected integer token ids, got {labels.dtype}")
    if label_lengths is None:
        label_lengths = (labels > 0).sum(dim=1)
    elif label_lengths.shape != (B,):
        raise XlsrError(f"label_lengths: expected shape ({B},), got {tuple(label_lengths.shape)}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
        return F.ctc_loss(log_probs, labels.long().clamp(min=0), frame_lengths,
                          label_lengths.long().to(frame_lengths.device), blank=0, reduction="mean",
                          zero_infinity=True)


def ctc_collapse(path: Sequence[int], blank_id: int = 0) -> tuple[list[int], list[int]]:
    """Collapse a frame-level path: (token ids, start frame of each token). Blank separates repeats."""
    ids: list[int] = []
    starts: list[int] = []
    prev = None
    for t, idx in enumerate(path):
        idx = int(idx)
        if idx != prev and idx != blank_id:
            ids.append(idx)
            starts.append(t)
        prev = idx
    return ids, starts


def ctc_best_path_with_starts(logits: torch.Tensor, frame_lengths: torch.Tensor | None,
                              blank_id: int = 0) -> list[tuple[list[int], list[int]]]:
    """Per row of logits (B, T, V): (token ids, start frames) of the best path over its first frame_lengths[b] frames."""
    best = logits.argmax(dim=-1).cpu()  # (B, T); one transfer for the whole batch
    T = best.shape[1]
    lengths = [T] * best.shape[0] if frame_lengths is None else torch.as_tensor(frame_lengths).tolist()
    return [ctc_collapse(best[b, : int(n)].tolist(), blank_id) for b, n in enumerate(lengths)]


def ctc_best_path(logits: torch.Tensor, frame_lengths: torch.Tensor | None) -> list[list[int]]:
    """Greedy CTC decoding of logits (B, T, V): argmax per valid frame, merge repeats, drop blanks (id 0)."""
    return [ids for ids, _ in ctc_best_path_with_starts(logits, frame_lengths)]
