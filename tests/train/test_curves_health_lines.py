"""`xlsr plot`'s feature-health and probe panels hold a line for every figure a run logs: both probe views in
either metric, and the input's own log-mel dimension beside the CNN's."""

import matplotlib.pyplot as plt
import pytest

from xlsr.train.curves import draw_training_curves


def _panel(fig, title):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return ax


def _valid(update, **values):
    return {"split": "valid", "update": update, "loss": 4.0, **values}


def test_both_probe_views_are_drawn_in_either_metric():
    for metric in ("per", "cer"):
        records = [_valid(u, **{f"probe_feature_{metric}": 0.9 - 0.1 * u, f"probe_context_{metric}": 0.8 - 0.1 * u})
                   for u in range(3)]
        fig = draw_training_curves(records, "run")
        lines = {line.get_label(): list(line.get_ydata()) for line in _panel(fig, "linear probe error rate").get_lines()}
        assert lines == {f"valid probe_feature_{metric}": pytest.approx([0.9, 0.8, 0.7]),
                         f"valid probe_context_{metric}": pytest.approx([0.8, 0.7, 0.6])}
        plt.close(fig)


def test_the_inputs_dimension_is_drawn_beside_the_cnns():
    records = [_valid(u, feature_eff_dim=40.0 - 10 * u, feature_eff_dim_init=48.0, input_eff_dim=6.0)
               for u in range(3)]
    fig = draw_training_curves(records, "run")
    ax = _panel(fig, "effective dimension (dashed: at initialisation)")
    solid = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines() if line.get_linestyle() != "--"}
    dashed = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"}
    assert solid == {"valid feature_eff_dim": [40.0, 30.0, 20.0], "valid input_eff_dim": [6.0, 6.0, 6.0]}
    assert dashed == {"feature_eff_dim at initialisation": 48.0}  # the input's figure is no model reference
    plt.close(fig)


def test_languages_share_one_legend_entry():
    records = [{"split": split, "update": u, "loss": 4.0 - u} for u in range(3)
               for split in ("train", "valid", "valid_aa", "valid_bb", "valid_cc")]
    fig = draw_training_curves(records, "run")
    ax = _panel(fig, "CTC loss (nats per label)")
    assert len(ax.get_lines()) == 5  # one line per language, but one entry for the three of them
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train loss", "valid loss",
                                                                   "valid, per language loss"]
    plt.close(fig)
