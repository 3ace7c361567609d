"""PNG figures of the shared-unit analysis: PCA scatter, dendrogram, similarity heatmap, sharing bars.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so no display and no global
backend state are involved, and the functions are safe to call from tests and worker threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram

from xlsr.analysis.output_folder import PNG_MARK_KEY
from xlsr.atomic import write_file

ANALYZE = "xlsr analyze"  # the command named in the PNGs' mark


def family_colors(families: list[str]) -> dict[str, tuple]:
    """A stable colour per family name (tab10, then tab20), 'unknown' in grey."""
    names = sorted(set(families) - {"unknown"})
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    colors = {name: cmap(i % cmap.N) for i, name in enumerate(names)}
    colors["unknown"] = (0.5, 0.5, 0.5, 1.0)
    return colors


def save_png(fig: Figure, path: Path, command: str) -> Path:
    """Write `fig` as PNG to a temporary name beside `path`, then rename it (xlsr.atomic); the PNG carries a text
    chunk naming `command`, by which a rerun knows the file as its own (analysis/output_folder.py)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    # format= because the temporary file's name does not end in .png
    return write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight",
                                                    metadata={PNG_MARK_KEY: command}))


def _save(fig: Figure, path: Path) -> Path:
    """Write an analysis figure (save_png, marked as `xlsr analyze`'s)."""
    return save_png(fig, path, ANALYZE)


def plot_pca(coords: np.ndarray, explained: np.ndarray, langs: list[str], families: list[str],
             path: Path, title: str = "Languages by codeword distribution (PCA)") -> Path:
    """Scatter of the 2-D PCA projection, one labelled point per language, coloured by family."""
    colors = family_colors(families)
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    for family in sorted(set(families)):
        idx = [i for i, f in enumerate(families) if f == family]
        ax.scatter(coords[idx, 0], coords[idx, 1], color=colors[family], label=family, s=50)
    for i, lang in enumerate(langs):
        ax.annotate(lang, (coords[i, 0], coords[i, 1]), textcoords="offset points", xytext=(4, 4), fontsize=9)
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.1f}% of variance)")
    ax.set_title(title)
    ax.legend(title="family", fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_dendrogram(linkage_matrix: np.ndarray, langs: list[str], families: list[str], path: Path,
                    title: str = "Average-linkage clustering on Jensen–Shannon distance") -> Path:
    """Dendrogram of the language clustering, leaf labels coloured by family."""
    colors = family_colors(families)
    fig = Figure(figsize=(max(6, 0.5 * len(langs) + 3), 5))
    ax = fig.add_subplot()
    dendrogram(linkage_matrix, labels=list(langs), ax=ax, color_threshold=0, above_threshold_color="0.3")
    family_of = dict(zip(langs, families))
    for label in ax.get_xmajorticklabels():
        label.set_color(colors[family_of[label.get_text()]])
    ax.set_ylabel("Jensen–Shannon distance")
    ax.set_title(title)
    handles = [ax.scatter([], [], color=colors[f], label=f) for f in sorted(set(families))]
    # beside the axes: inside, the top merges run under it (the highest links span the whole width)
    ax.legend(handles=handles, title="family", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_heatmap(matrix: np.ndarray, langs: list[str], path: Path, title: str, label: str) -> Path:
    """Heatmap of a (L, L) language similarity or distance matrix with the values written in."""
    L = len(langs)
    fig = Figure(figsize=(max(5, 0.55 * L + 2), max(4, 0.5 * L + 1.5)))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(L), labels=langs, rotation=90)
    ax.set_yticks(range(L), labels=langs)
    if L <= 20:  # numbers stay readable up to about this many languages
        mid = (np.nanmax(matrix) + np.nanmin(matrix)) / 2
        for i in range(L):
            for j in range(L):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if matrix[i, j] > mid else "white")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title)
    return _save(fig, path)


def plot_sharing(histogram: np.ndarray, path: Path,
                 title: str = "Codewords by number of languages using them") -> Path:
    """Bar chart: how many codewords are used by exactly 1, 2, …, L languages."""
    histogram = np.asarray(histogram)
    k = np.arange(1, histogram.size + 1)
    fig = Figure(figsize=(max(5, 0.4 * histogram.size + 3), 4))
    ax = fig.add_subplot()
    ax.bar(k, histogram, color="tab:blue")
    ax.set_xticks(k)
    ax.set_xlabel("number of languages using the codeword")
    ax.set_ylabel("codewords")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
