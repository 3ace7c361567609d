"""The dendrogram's family legend stays clear of the tree, whose top merges span the plot's whole width."""

import numpy as np
from matplotlib.figure import Figure

from xlsr.analysis import codebook as cb
from xlsr.analysis import plots


def test_the_legend_sits_beside_the_tree(tmp_path, monkeypatch):
    drawn = []
    savefig = Figure.savefig

    def keep(self, *args, **kwargs):
        drawn.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    rng = np.random.default_rng(0)
    langs = [f"l{i}" for i in range(12)]
    points = rng.random((12, 3))
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    families = ["Romance", "Slavic", "Germanic", "Uralic"] * 3
    plots.plot_dendrogram(cb.average_linkage(dist), langs, families, tmp_path / "dendrogram.png")

    fig = drawn[0]
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    tree = ax.get_window_extent(renderer)
    assert legend.x0 >= tree.x1  # right of the axes: no link is drawn under it
