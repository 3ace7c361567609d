"""The probe's figure: test error rate by layer, one labelled line per model, written atomically as PNG.

Drawn on matplotlib's Agg canvas directly (no pyplot) and saved as the other analysis figures (`plots.save_png`).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from xlsr.analysis.plots import save_png
from xlsr.analysis.probe_features import CNN

PROBE = "xlsr probe"  # the command named in the PNG's mark


def layer_position(layer: str | int) -> int:
    """x position of a layer: the CNN output left of layer 0, so models of any depth align by layer index."""
    return -1 if layer == CNN else int(layer)


def plot_probe(entries: list[dict], path: str | Path, metric: str = "per") -> Path:
    """One line per entry ({"name", "layers": [{"layer", metric}, ...]}), error rate in % against the layer."""
    path = Path(path)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    positions = set()
    for entry in entries:
        points = sorted((layer_position(r["layer"]), 100 * r[metric]) for r in entry["layers"])
        positions.update(x for x, _ in points)
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=entry["name"])
    ticks = sorted(positions)
    ax.set_xticks(ticks, labels=[CNN if x == -1 else str(x) for x in ticks])
    ax.set_xlabel("layer (cnn = CNN output, 0 = Transformer input, i = output of block i)")
    ax.set_ylabel(f"test {metric.upper()} (%)")
    ax.set_title(f"Linear CTC probe of frozen features: {metric.upper()} by layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_png(fig, path, PROBE)
