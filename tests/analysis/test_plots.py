"""The analysis figures are written as PNG files from hand-built statistics."""

import numpy as np

from xlsr.analysis import codebook as cb
from xlsr.analysis import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 2000  # a real picture, not an empty canvas


def test_pca_dendrogram_heatmap_and_sharing_are_written(tmp_path):
    rng = np.random.default_rng(0)
    langs = ["it", "es", "de", "nl", "zh"]
    families = ["Romance", "Romance", "Germanic", "Germanic", "unknown"]
    p = cb.distributions(rng.integers(0, 10, size=(5, 40)))
    coords, explained = cb.pca_2d(p)
    dist = cb.js_distance(p)
    counts = rng.integers(0, 3, size=(5, 40))
    written = [
        plots.plot_pca(coords, explained, langs, families, tmp_path / "pca.png"),
        plots.plot_dendrogram(cb.average_linkage(dist), langs, families, tmp_path / "sub" / "dendrogram.png"),
        plots.plot_heatmap(dist, langs, tmp_path / "similarity.png", title="JS", label="distance"),
        plots.plot_sharing(cb.sharing_histogram(counts), tmp_path / "sharing.png"),
    ]
    for path in written:
        assert path.exists() and _is_png(path), path


def test_family_colors_are_distinct_and_unknown_grey():
    colors = plots.family_colors(["Romance", "Germanic", "unknown", "Romance"])
    assert colors["Romance"] != colors["Germanic"]
    assert colors["unknown"] == (0.5, 0.5, 0.5, 1.0)

