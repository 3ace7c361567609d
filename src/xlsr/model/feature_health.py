"""How healthy a set of frame features is: effective dimension and spread of channel scales (pure functions).

A representation that collapses onto a few directions, or whose scale is carried by a few loud channels,
shows it here before it shows in a downstream error rate. Features are (..., D) frames; an optional boolean
`mask` of the leading shape marks the frames to count (True = valid, the complement of
`model.masking.padding_mask`). Everything is computed in float64.
"""

from __future__ import annotations

import torch

from xlsr.errors import XlsrError


def valid_frames(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The (N, D) float64 frames of `features` (..., D) where `mask` (...) is True (all frames without a mask)."""
    if not isinstance(features, torch.Tensor) or features.dim() < 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise XlsrError(f"features: expected a tensor of shape (..., frames, channels), got {shape}")
    x = features.detach().to(torch.float64)
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:-1]):
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise XlsrError(f"mask: expected a bool tensor of shape {tuple(x.shape[:-1])} (True = valid frame), got {got}")
    return x[mask.to(x.device)]


def covariance(frames: torch.Tensor) -> torch.Tensor:
    """(D, D) covariance of (N, D) frames around their mean (divided by N; the scale cancels in the ratios here)."""
    centered = frames - frames.mean(dim=0, keepdim=True)
    return centered.T @ centered / max(frames.shape[0], 1)


def effective_dimension(features: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Participation ratio (Σλ)² / Σλ² of the covariance eigenvalues over valid frames (1 ≤ value ≤ D; 0 if constant).

    Isotropic variance in k of D directions gives k; one dominant direction gives ~1.
    """
    frames = valid_frames(features, mask)
    if frames.shape[0] < 2:
        raise XlsrError(f"features: need at least 2 valid frames for a covariance, got {frames.shape[0]}")
    cov = covariance(frames)
    # For a symmetric matrix Σλ = trace and Σλ² = squared Frobenius norm: no eigendecomposition needed.
    sum_sq = float((cov * cov).sum())
    if sum_sq == 0.0:
        return 0.0
    return float(torch.trace(cov)) ** 2 / sum_sq


def channel_std(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(D,) float64 standard deviation of each channel over valid frames (population, divided by N)."""
    frames = valid_frames(features, mask)
    if frames.shape[0] < 1:
        raise XlsrError("features: no valid frames")
    return frames.std(dim=0, correction=0)


def channel_scale_spread(features: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Largest channel standard deviation over the median one (1 = all channels equally loud; inf if median is 0)."""
    std = channel_std(features, mask)
    # torch.median of an even count returns the lower middle value; the usual median averages the two.
    median = float(std.quantile(0.5))
    top = float(std.max())
    if median == 0.0:
        return 0.0 if top == 0.0 else float("inf")
    return top / median
