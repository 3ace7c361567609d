"""The probe's figure: the CNN output left of layer 0, each model's error rate in percent at its layers."""

import pytest
from matplotlib.figure import Figure

import xlsr.analysis.probe_plot as probe_plot
from xlsr.analysis.probe_plot import layer_position, plot_probe


def test_layers_by_position_cnn_first():
    assert [layer_position(x) for x in ("cnn", 0, 1, 12)] == [-1, 0, 1, 12]


def test_each_model_is_a_line_of_percent_by_layer(tmp_path, monkeypatch):
    figures = []

    class KeptFigure(Figure):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            figures.append(self)

    monkeypatch.setattr(probe_plot, "Figure", KeptFigure)
    entries = [{"name": "deep", "layers": [{"layer": "cnn", "per": 0.8}, {"layer": 0, "per": 0.6},
                                           {"layer": 1, "per": 0.3}, {"layer": 2, "per": 0.25}]},
               {"name": "shallow", "layers": [{"layer": 1, "per": 0.5}, {"layer": "cnn", "per": 0.9}]}]
    path = plot_probe(entries, tmp_path / "probe.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax,) = figures[0].axes
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert lines["deep"] == ([-1, 0, 1, 2], pytest.approx([80.0, 60.0, 30.0, 25.0]))
    assert lines["shallow"] == ([-1, 1], pytest.approx([90.0, 50.0]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cnn", "0", "1", "2"]
    assert "PER (%)" in ax.get_ylabel()
