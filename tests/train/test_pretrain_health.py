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


def test_feature_collapse_against_the_value_at_initialisation():
    kw = dict(num_groups=2, num_codevectors_per_group=320, num_negatives=100, update=30)
    # the released tiny checkpoints: CNN features 4.1 against 48.6 at random initialisation
    collapsed = {"feature_eff_dim": 4.1, "feature_eff_dim_init": 48.6, "context_eff_dim": 20.0,
                 "context_eff_dim_init": 30.0}
    warnings = pretrain_health_warnings(collapsed, **kw)  # before min_update too: the reference is fixed
    assert [k for k, _ in warnings] == ["feature_collapse"]
    assert "4.1" in warnings[0][1] and "48.6" in warnings[0][1] and "8%" in warnings[0][1]
    both = {**collapsed, "context_eff_dim": 7.0}
    assert [k for k, _ in pretrain_health_warnings(both, **kw)] == ["feature_collapse", "context_collapse"]
    # the CNN's warning quotes the input's own log-mel dimension when it was measured; the context's does not
    messages = dict(pretrain_health_warnings({**both, "input_eff_dim": 6.1}, **kw))
    assert "4.1 (the input's log-mel spectrum: 6.1)" in messages["feature_collapse"]
    assert "log-mel" not in messages["context_collapse"] and "log-mel" not in dict(
        pretrain_health_warnings(both, **kw))["feature_collapse"]
    # at the threshold (25%) and above: no warning; without a reference: none
    assert pretrain_health_warnings({"feature_eff_dim": 12.15, "feature_eff_dim_init": 48.6}, **kw) == []
    assert pretrain_health_warnings({"feature_eff_dim": 4.1}, **kw) == []
    assert [k for k, _ in pretrain_health_warnings({"feature_eff_dim": 12.15, "feature_eff_dim_init": 48.6},
                                                   dimension_collapse_ratio=0.5, **kw)] == ["feature_collapse"]
