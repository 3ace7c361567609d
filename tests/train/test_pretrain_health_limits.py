"""The pretraining warnings' lines against hand values: the code-perplexity ceiling of a log without a frame
count, the neg_is_pos limit G/V, and chance level log2(1 + distractors)."""

import math

from xlsr.train.pretrain_health import neg_is_pos_limit, pretrain_health_warnings


def _kinds(logs, **kw):
    return [k for k, _ in pretrain_health_warnings(logs, **kw)]


def test_without_a_frame_count_the_ceiling_is_the_whole_codebook():
    kw = dict(num_groups=2, num_codevectors_per_group=320, num_distractors=100, update=500)
    # G·V = 640: 10 codes in use is a collapse (under 64), 100 is not
    assert _kinds({"code_perplexity": 10.0}, **kw) == ["codebook_collapse"]
    assert "of at most 640" in pretrain_health_warnings({"code_perplexity": 10.0}, **kw)[0][1]
    assert _kinds({"code_perplexity": 100.0}, **kw) == []


def test_neg_is_pos_limit_is_groups_over_entries_at_least_the_floor():
    assert neg_is_pos_limit(2, 16) == 2 / 16
    assert neg_is_pos_limit(4, 16) == 4 / 16
    assert neg_is_pos_limit(2, 320) == 0.05
    assert neg_is_pos_limit(2, 320, floor=0.001) == 2 / 320
    kw = dict(num_groups=2, num_codevectors_per_group=16, num_distractors=20, update=500)
    assert _kinds({"neg_is_pos": 0.10}, **kw) == []  # under G/V = 12.5%
    assert _kinds({"neg_is_pos": 0.13}, **kw) == ["neg_is_pos"]
    assert _kinds({"neg_is_pos": 0.20}, **{**kw, "num_groups": 4}) == []  # G/V = 25%


def test_chance_level_counts_the_positive_among_the_candidates():
    # 20 distractors + the positive: chance is log2(21) = 4.392 bits; the line is 2% below it, 4.304
    kw = dict(num_groups=2, num_codevectors_per_group=320, num_distractors=20, update=2000)
    line = 0.98 * math.log2(21)
    assert _kinds({"contrastive_loss": line - 0.01}, **kw) == []
    assert _kinds({"contrastive_loss": 4.25}, **kw) == []  # under log2(21)'s line, above log2(20)'s (4.236)
    (warning,) = pretrain_health_warnings({"contrastive_loss": line + 0.01}, **kw)
    assert warning[0] == "stuck_at_chance" and "log2(1 + 20 distractors) = 4.392" in warning[1]
    # stuck only once `stuck_after` updates have passed
    assert _kinds({"contrastive_loss": 4.39}, **{**kw, "update": 999}) == []
    assert _kinds({"contrastive_loss": 4.39}, **{**kw, "update": 1000}) == ["stuck_at_chance"]
