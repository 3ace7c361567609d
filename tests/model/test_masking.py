import torch

from xlsr.model.masking import compute_channel_mask, compute_mask_indices, span_counts


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_masked_share_matches_paper_on_long_inputs():
    # 15 s clips: 749 frames. Paper/fairseq: about 1 - (1 - 0.065)^10 = 49% of frames masked.
    lengths = torch.full((64,), 749)
    mask = compute_mask_indices(lengths, 749, 0.65, 10, 2, _gen(), require_same_masks=False)
    share = mask.float().mean().item()
    expected = 1 - (1 - 0.065) ** 10
    assert abs(share - expected) < 0.03, share


def test_padding_never_masked_and_same_count_per_row():
    lengths = torch.tensor([200, 150, 97, 60])
    mask = compute_mask_indices(lengths, 200, 0.65, 10, 2, _gen(1))
    frames = torch.arange(200)
    assert not (mask & (frames[None] >= lengths[:, None])).any()
    counts = mask.sum(1)
    assert (counts == counts[0]).all() and counts[0] > 0


def test_min_masks_and_span_structure():
    # mask_prob tiny: the count comes from min_masks; spans are runs of mask_length frames.
    lengths = torch.full((16,), 400)
    mask = compute_mask_indices(lengths, 400, 0.0001, 10, 2, _gen(2), require_same_masks=False)
    counts = mask.sum(1)
    assert ((counts >= 10) & (counts <= 20)).all()  # two spans of 10, possibly overlapping
    assert not mask[:, 399].any()  # starts lie in [0, L - M): the last frame is never reached
    # L = M + 1: start 0 is the only one, so every row masks exactly frames 0..9, never frame 10
    one = compute_mask_indices(torch.full((64,), 11), 11, 0.0001, 10, 1, _gen(2), require_same_masks=False)
    assert torch.equal(one, (torch.arange(11) < 10).expand(64, 11))


def test_seeded_and_pure():
    lengths = torch.tensor([120, 80])
    a = compute_mask_indices(lengths, 120, 0.65, 10, 2, _gen(7))
    b = compute_mask_indices(lengths, 120, 0.65, 10, 2, _gen(7))
    c = compute_mask_indices(lengths, 120, 0.65, 10, 2, _gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_short_inputs_clamp_instead_of_failing():
    lengths = torch.tensor([3, 1, 12])
    mask = compute_mask_indices(lengths, 12, 0.65, 10, 2, _gen(3))
    assert mask.sum(1).tolist() == [1, 1, 1]  # the batch minimum (the 1-frame row) is kept everywhere
    assert not mask[1, 1:].any() and not mask[0, 3:].any()
    assert compute_mask_indices(torch.tensor([0, 5]), 5, 0.65, 10, 2, _gen()).sum() == 0


def test_channel_mask_spans():
    mask = compute_channel_mask(32, 256, 0.25, 64, _gen(4))
    assert mask.shape == (32, 256)
    counts = mask.sum(1)
    assert (counts == counts[0]).all()
    assert 0 < mask.float().mean() < 0.5


def test_an_unpadded_batch_draws_one_span_count_for_all_rows_as_fairseq():
    # fairseq draws int(p * T / M + U) once per batch when no padding mask is given (pretraining's cropped
    # batches), once per row when the batch is padded; with require_same_masks independent draws mask fewer frames.
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        counts = span_counts(torch.full((8,), 49), 49, 0.65, 10, 2, g)
        assert counts.unique().numel() == 1 and int(counts[0]) in (3, 4)  # 0.65 * 49 / 10 = 3.185
    padded = torch.stack([span_counts(torch.tensor([49, 48, 47, 46, 45, 44, 43, 42]), 49, 0.65, 10, 2, g)
                          for _ in range(50)])
    assert (padded.min(dim=1).values != padded.max(dim=1).values).any()  # rows draw on their own
    # padded even though one row is full length: still one U per row. 0.5 * 45 / 10 = 2.25, 0.5 * 25 / 10 = 1.25:
    # one shared U would always give counts (2, 1) or (3, 2), a difference of 1; own draws also give 0 and 2.
    diffs = {int(c[0] - c[1]) for c in (span_counts(torch.tensor([45, 25]), 45, 0.5, 10, 0, g) for _ in range(200))}
    assert diffs == {0, 1, 2}
    assert torch.equal(span_counts(torch.tensor([3, 3]), 3, 0.1, 10, 2, g), torch.tensor([2, 2]))  # min_masks
