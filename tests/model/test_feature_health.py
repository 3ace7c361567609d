"""Effective dimension and channel-scale spread against hand computations."""

import math

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.model.feature_health import channel_scale_spread, channel_std, effective_dimension, valid_frames


def isotropic_in(k: int, dim: int) -> torch.Tensor:
    """Frames spanning exactly k of dim channels with equal variance: ±1 patterns, exactly isotropic."""
    # All 2^k sign patterns: every channel has variance 1 and every pair covariance 0, exactly.
    signs = torch.tensor([[1.0 if (n >> j) & 1 else -1.0 for j in range(k)] for n in range(2**k)])
    x = torch.zeros(2**k, dim)
    x[:, :k] = signs
    return x


@pytest.mark.parametrize("k", [1, 3, 5])
def test_isotropic_in_k_dimensions_gives_k(k):
    assert effective_dimension(isotropic_in(k, 8)) == pytest.approx(k, abs=1e-12)


def test_rotation_and_scale_do_not_change_it():
    x = isotropic_in(4, 6)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    rotated = 7.5 * (x.double() @ q) + 3.0  # a rotation, a scale and an offset
    assert effective_dimension(rotated) == pytest.approx(4.0, abs=1e-9)


def test_known_eigenvalues():
    # Independent ±σ_i channels: covariance diag(σ²) = diag(4, 1, 1) -> (6)² / (16 + 1 + 1) = 2.
    x = isotropic_in(3, 3) * torch.tensor([2.0, 1.0, 1.0])
    assert effective_dimension(x) == pytest.approx(36 / 18, abs=1e-12)


def test_mask_keeps_only_valid_frames():
    good = isotropic_in(3, 4)  # 8 frames
    junk = torch.full((8, 4), 100.0)
    junk[::2, 0] = -100.0  # one loud direction: would pull the value towards 1
    features = torch.stack([good, junk])  # (B=2, T=8, D=4)
    mask = torch.tensor([[True] * 8, [False] * 8])
    assert effective_dimension(features, mask) == pytest.approx(3.0, abs=1e-12)
    assert effective_dimension(features) < 2.0
    assert valid_frames(features, mask).shape == (8, 4)


def test_constant_features_give_zero():
    assert effective_dimension(torch.ones(10, 4)) == 0.0
    assert channel_scale_spread(torch.ones(10, 4)) == 0.0


def test_channel_scale_spread_by_hand():
    # Channel standard deviations 1, 2, 3, 10: median (2 + 3) / 2 = 2.5, max 10 -> 4.
    x = isotropic_in(4, 4) * torch.tensor([1.0, 2.0, 3.0, 10.0])
    torch.testing.assert_close(channel_std(x), torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=torch.float64))
    assert channel_scale_spread(x) == pytest.approx(4.0, abs=1e-12)
    # Mostly silent channels: the median is 0 while one channel varies.
    assert math.isinf(channel_scale_spread(isotropic_in(1, 4)))


def test_bad_inputs_raise():
    with pytest.raises(XlsrError, match="mask"):
        effective_dimension(torch.zeros(2, 5, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(XlsrError, match="at least 2 valid frames"):
        effective_dimension(torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(XlsrError, match="features"):
        effective_dimension(torch.zeros(5))
