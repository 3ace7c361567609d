"""Span masking with fairseq's compute_mask_indices semantics, vectorized and seeded (no loop over frames)."""

from __future__ import annotations

import torch


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def _keep_random(candidates: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per row, a uniformly random subset of size counts[b] of the True positions of `candidates` (B, N)."""
    B, N = candidates.shape
    keys = _rand((B, N), candidates.device, generator).masked_fill(~candidates, 2.0)  # non-candidates sort last
    order = keys.argsort(dim=1)
    rank_kept = torch.arange(N, device=candidates.device).unsqueeze(0) < counts.unsqueeze(1)
    return torch.zeros_like(candidates).scatter(1, order, rank_kept)


def span_counts(lengths: torch.Tensor, T: int, mask_prob: float, mask_length: int, min_masks: int,
                generator: torch.Generator | None) -> torch.Tensor:
    """(B,) spans to draw per row: int(mask_prob * L / mask_length + U[0,1)), at least min_masks.

    As fairseq: a batch with no padding (every row T frames) draws one U for all its rows; a padded batch one
    per row. `require_same_masks` then cuts every row down to the batch's smallest mask, so independent draws
    would mask fewer frames than fairseq on unpadded batches (2% fewer for 8 crops of 49 frames).
    """
    u = _rand((lengths.shape[0],), lengths.device, generator)
    u = torch.where((lengths == T).all(), u[:1].expand_as(u), u)  # decided on the device: no host sync
    return (mask_prob * lengths / mask_length + u).floor().long().clamp(min=min_masks)


def compute_mask_indices(frame_lengths: torch.Tensor, T: int, mask_prob: float, mask_length: int,
                         min_masks: int = 0, generator: torch.Generator | None = None,
                         require_same_masks: bool = True) -> torch.Tensor:
    """(B, T) bool mask of spans over the first frame_lengths[b] frames of each row.

    fairseq semantics: per row, num_spans = int(mask_prob * L / mask_length + U[0,1)), at least min_masks, one U
    for the whole batch when no row is padded (`span_counts`);
    span starts drawn without replacement from [0, L - mask_length); spans may overlap; padding is never masked;
    with require_same_masks every row keeps a random subset of its masked frames down to the batch minimum.
    Short rows clamp instead of failing: the span count is capped by the number of possible starts and a span
    never runs past L. Runs on frame_lengths' device; `generator` must live on that device.
    """
    lengths = frame_lengths.long().clamp(min=0, max=T)
    B, device = lengths.shape[0], lengths.device
    if B == 0 or T == 0 or mask_prob <= 0.0:
        return torch.zeros(B, T, dtype=torch.bool, device=device)
    num_spans = span_counts(lengths, T, mask_prob, mask_length, min_masks, generator)
    num_starts = (lengths - mask_length).clamp(min=1)  # starts in [0, L - M); at least start 0 for short rows
    num_spans = torch.minimum(num_spans, num_starts).masked_fill(lengths == 0, 0)

    frames = torch.arange(T, device=device).unsqueeze(0)  # (1, T)
    starts = _keep_random(frames < num_starts.unsqueeze(1), num_spans, generator)  # (B, T) span starts
    # Frame t is masked when a span starts in (t - M, t]: a sliding-window count via cumsum.
    c = starts.long().cumsum(dim=1)
    c_shifted = torch.nn.functional.pad(c, (mask_length, 0))[:, :T]
    mask = (c - c_shifted > 0) & (frames < lengths.unsqueeze(1))
    if require_same_masks and B > 1:
        counts = mask.sum(dim=1)
        mask = _keep_random(mask, counts.min().expand(B), generator)
    return mask


def compute_channel_mask(batch_size: int, num_channels: int, mask_prob: float, mask_length: int,
                         generator: torch.Generator | None = None, device: torch.device | str | None = None,
                         min_masks: int = 0) -> torch.Tensor:
    """(B, C) bool mask of channel spans (fine-tuning's SpecAugment on features); same rules as time masks."""
    lengths = torch.full((batch_size,), num_channels, dtype=torch.long, device=device)
    return compute_mask_indices(lengths, num_channels, mask_prob, min(mask_length, num_channels), min_masks,
                                generator)


def padding_mask(frame_lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True at frames at or beyond each row's length."""
    return torch.arange(T, device=frame_lengths.device).unsqueeze(0) >= frame_lengths.unsqueeze(1)


def padding_mask_if_padded(frame_lengths: torch.Tensor, T: int, device: torch.device | str) -> torch.Tensor | None:
    """padding_mask on `device`, or None when no row is padded.

    Decided on the host for CPU lengths (the data loader's); lengths on an accelerator always get a mask, since
    deciding would cost a host sync. None keeps unpadded batches on the mask-free attention and mean paths.
    """
    if frame_lengths.device.type == "cpu" and not bool((frame_lengths < T).any()):
        return None
    return padding_mask(frame_lengths.to(device, non_blocking=True), T)
