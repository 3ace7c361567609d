"""The validation frame sample and the feature-health figures computed on it."""

import pytest
import torch

from xlsr.model.feature_health import channel_scale_spread, effective_dimension
from xlsr.train.feature_monitor import FrameSample, feature_health_logs


def _batches(n_batches=10, frames=100, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(frames, dim, generator=g) + b for b in range(n_batches)]  # batch b: mean b


def test_a_sample_larger_than_the_frames_keeps_all_of_them():
    batches = _batches(3, 50)
    sample = FrameSample(1000)
    for b in batches:
        sample.add(b, 2 * b)
    assert len(sample) == 150
    pooled = torch.cat(batches)
    assert effective_dimension(sample.views[0]) == pytest.approx(effective_dimension(pooled), rel=1e-12)


def test_the_sample_is_uniform_over_batches_aligned_across_views_and_repeatable():
    batches = _batches()
    sample = FrameSample(100, seed=3)
    for b in batches:
        sample.add(b, b.sum(dim=1, keepdim=True))
    features, sums = sample.views
    assert features.shape == (100, 6) and sums.shape == (100, 1)
    torch.testing.assert_close(features.sum(dim=1, keepdim=True), sums)  # row i of each view is the same frame
    # every batch contributes about its share (10 of 100), not the first batches only
    per_batch = torch.bincount(features.mean(dim=1).round().clamp(0, 9).long(), minlength=10)
    assert per_batch.min() >= 2 and per_batch.max() <= 25, per_batch
    first = features.clone()
    sample.reset()
    for b in batches:
        sample.add(b, b.sum(dim=1, keepdim=True))
    assert torch.equal(sample.views[0], first)  # the same frames at every validation


def test_feature_health_logs_by_hand():
    # frames spanning 3 of 5 channels equally (±1 patterns): effective dimension 3; context constant: 0
    signs = torch.tensor([[1.0 if (n >> j) & 1 else -1.0 for j in range(3)] for n in range(8)])
    features = torch.cat([signs * torch.tensor([1.0, 1.0, 1.0]), torch.zeros(8, 2)], dim=1)
    logs = feature_health_logs(features, torch.ones(8, 4))
    assert logs["feature_eff_dim"] == pytest.approx(3.0)
    assert logs["context_eff_dim"] == 0.0
    assert logs["feature_scale_spread"] == channel_scale_spread(features)
    assert feature_health_logs(features[:1], torch.ones(1, 4)) == {}


def test_each_group_offers_its_share_then_no_more():
    sample = FrameSample(100)
    sample.reset(groups=3)  # a share of 34 frames each
    offered = {"aa": 0, "bb": 0}
    for b in _batches(8, 20):
        for group in offered:
            if sample.wants(group):
                sample.add(b, group=group)
                offered[group] += 20
    assert offered == {"aa": 40, "bb": 40} and len(sample) == 80  # 2 batches of 20 reach 34
    assert sample.wants("cc")


def test_the_inputs_log_mel_view_is_measured_beside_the_models():
    frames = _batches(1, 200, 6)[0]
    logs = feature_health_logs(frames, frames[:, :3], inputs=frames[:, :2])
    assert logs["input_eff_dim"] == pytest.approx(effective_dimension(frames[:, :2]), rel=1e-12)
    assert logs["feature_eff_dim"] == pytest.approx(effective_dimension(frames), rel=1e-12)
    assert "input_eff_dim" not in feature_health_logs(frames, frames)
