"""Pretraining health warnings: codebook collapse, distractors equal to their positive, loss stuck at chance."""

import math

from xlsr.train.pretrain_health import pretrain_health_warnings


def test_health_warnings():
    kw = dict(num_groups=2, num_codevectors_per_group=320, num_negatives=100, update=2000)
    healthy = {"code_perplexity": 400.0, "neg_is_pos": 0.001, "contrastive_loss": 3.0, "sample_size": 5000}
    assert pretrain_health_warnings(healthy, **kw) == []
    kinds = [k for k, _ in pretrain_health_warnings(
        {"code_perplexity": 12.0, "neg_is_pos": 0.3, "contrastive_loss": math.log2(101) - 0.01,
         "sample_size": 5000}, **kw)]
    assert kinds == ["codebook_collapse", "neg_is_pos", "stuck_at_chance"]
    # the perplexity ceiling is the number of frames when there are fewer frames than codes
    assert pretrain_health_warnings({"code_perplexity": 30.0, "sample_size": 40}, **kw) == []
    # no warnings in the first updates
    assert pretrain_health_warnings({"code_perplexity": 1.0}, **{**kw, "update": 10}) == []
