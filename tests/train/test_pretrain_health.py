"""Pretraining health warnings: codebook collapse, distractors equal to their positive, loss stuck at chance."""

import math

import pytest

from xlsr.train.monitor import accumulate_logs
from xlsr.train.pretrain import PretrainTask
from xlsr.train.pretrain_health import code_perplexity_ceiling, pretrain_health_warnings


def test_health_warnings():
    kw = dict(num_groups=2, num_codevectors_per_group=320, num_distractors=100, update=2000)
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


def _update_log(micro_logs: list[dict]) -> dict:
    """One update's train log from its micro-batches' logs, summed and averaged as the Trainer does."""
    acc = {}
    for logs in micro_logs:
        accumulate_logs(acc, logs, logs["sample_size"], PretrainTask.summed_logs)
    size = sum(logs["sample_size"] for logs in micro_logs)
    return {k: v if k in PretrainTask.summed_logs else v / size for k, v in acc.items()}


def test_codebook_ceiling_is_that_of_each_micro_batch_not_of_the_summed_frames():
    # update_freq 16 micro-batches of 20 masked frames (one 1 s crop each): each can show at most G·20 = 40 codes
    kw = dict(num_groups=2, num_codevectors_per_group=320, num_distractors=100, update=500)
    ceiling = code_perplexity_ceiling(2, 320, 20)
    assert ceiling == 40

    def update(ppl):
        return _update_log([{"sample_size": 20.0, "code_perplexity": ppl, "code_perplexity_max": ceiling}] * 16)

    healthy = update(38.0)
    assert healthy["sample_size"] == 320 and healthy["code_perplexity_max"] == pytest.approx(40)
    assert pretrain_health_warnings(healthy, **kw) == []  # 38 of 40, not of G·min(V, 320) = 640
    assert [k for k, _ in pretrain_health_warnings(update(3.0), **kw)] == ["codebook_collapse"]
    # micro-batches of unequal size: the frame-weighted mean of their ceilings, as code_perplexity is averaged
    mixed = _update_log([{"sample_size": n, "code_perplexity": 0.9 * code_perplexity_ceiling(2, 320, n),
                          "code_perplexity_max": code_perplexity_ceiling(2, 320, n)} for n in (20.0, 600.0)])
    assert mixed["code_perplexity"] == pytest.approx(0.9 * mixed["code_perplexity_max"])


def test_neg_is_pos_limit_follows_the_codebook_size():
    # the release curve of the tiny demo (docs/pretrain_recipe.md): G·V = 2·16, K = 20; healthy all along
    kw = dict(num_groups=2, num_codevectors_per_group=16, num_distractors=20, stuck_after=533)
    for update, acc, loss, ppl, nip in ((300, 0.321, 3.297, 27.4, 0.042), (400, 0.358, 3.085, 26.4, 0.053),
                                        (800, 0.450, 2.615, 27.3, 0.044)):
        logs = {"accuracy": acc, "contrastive_loss": loss, "code_perplexity": ppl, "neg_is_pos": nip,
                "sample_size": 5000.0}
        assert pretrain_health_warnings(logs, update=update, **kw) == [], update
    # its trials whose codebook shrank (F: 7.1 of 32 codes) or collapsed (E: one code per group) still warn
    for ppl, nip in ((7.1, 0.23), (2.0, 1.0)):
        logs = {"code_perplexity": ppl, "neg_is_pos": nip, "sample_size": 5000.0}
        assert "neg_is_pos" in [k for k, _ in pretrain_health_warnings(logs, update=225, **kw)]
    # V = 320: the limit stays 5%
    big = dict(num_groups=2, num_codevectors_per_group=320, num_distractors=100, update=2000)
    assert [k for k, _ in pretrain_health_warnings({"neg_is_pos": 0.053}, **big)] == ["neg_is_pos"]
    assert pretrain_health_warnings({"neg_is_pos": 0.049}, **big) == []


def test_feature_collapse_against_the_value_at_initialisation():
    kw = dict(num_groups=2, num_codevectors_per_group=320, num_distractors=100, update=30)
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
