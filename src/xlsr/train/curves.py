"""Training curves from a run's `log.jsonl`, drawn to a PNG (loss, accuracy, perplexity, validation error rate,
schedules, feature health), for pretraining and fine-tuning runs."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xlsr.atomic import write_file
from xlsr.errors import XlsrError
from xlsr.train.feature_monitor import (
    CONTEXT_EFF_DIM,
    FEATURE_EFF_DIM,
    FEATURE_SCALE_SPREAD,
    INIT_SUFFIX,
    INPUT_EFF_DIM,
)
from xlsr.train.monitor import SAMPLING_REPORT, TRAINED_KEY, read_log

LOSS = "loss"  # the loss panel's title depends on the run: see loss_title
# (title, keys); a panel is drawn when any of its keys was logged
PANELS = [
    (LOSS, ("loss", "contrastive_loss")),
    ("validation error rate", ("per", "cer")),  # fine-tuning's greedy PER (phones) or CER (characters)
    ("contrastive accuracy", ("accuracy",)),
    ("code perplexity", ("code_perplexity", "prob_perplexity")),
    ("learning rate", ("lr",)),
    ("Gumbel temperature", ("temperature",)),
    ("gradient norm", ("grad_norm",)),
    ("effective dimension (dashed: at initialisation)", (FEATURE_EFF_DIM, CONTEXT_EFF_DIM, INPUT_EFF_DIM)),
    ("CNN channel-scale spread (max / median std)", (FEATURE_SCALE_SPREAD,)),
    ("linear probe error rate", ("probe_feature_per", "probe_context_per", "probe_feature_cer", "probe_context_cer")),
    ("audio files skipped (run total)", ("bad_files", "short_files")),  # unreadable; too short once decoded
]
# Counts logged on every update, drawn only once one is not 0: a run that skipped nothing needs no panel of zeros
DRAWN_WHEN_NONZERO = ("bad_files", "short_files")

# Keys that only pretraining writes: its loss is the contrastive one, in bits per masked frame (fine-tuning's is CTC)
PRETRAINING_KEYS = ("contrastive_loss", "accuracy", "code_perplexity", "prob_perplexity")

IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg")  # formats matplotlib's Agg canvas writes


def loss_title(records: list[dict]) -> str:
    """The loss panel's title: pretraining's contrastive loss is in bits per masked frame; fine-tuning's CTC loss
    is the batch mean of each utterance's loss divided by its label count, in nats."""
    if any(k in r for r in records for k in PRETRAINING_KEYS):
        return "loss (bits per masked frame)"
    return "CTC loss (nats per label)"


def logged_panels(records: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
    """The PANELS entries that `records` hold a key of, the loss panel titled for the run."""
    return [(loss_title(records) if title == LOSS else title, keys) for title, keys in PANELS
            if any(r.get(k) if k in DRAWN_WHEN_NONZERO else k in r for r in records for k in keys)]


def plot_training_curves(run_dir: str | Path, out_png: str | Path | None = None) -> Path:
    """Draw train (and validation, per language) curves of `run_dir` to `out_png` (default RUN/curves.png)."""
    run_dir = Path(run_dir)
    log_path = require_log(run_dir)
    logged = read_log(log_path)
    records = [r for r in logged if is_update_record(r)]
    if not records:
        lines = sum(1 for line in log_path.read_bytes().splitlines() if line.strip())
        if lines > 1 and not logged:  # a kill tears one line at most: more, none of them JSON, is no run's log
            raise XlsrError(f"{log_path}: none of its {lines} lines is a JSON record (is this a run's log.jsonl?)")
        if any(isinstance(r, dict) and ("split" in r or "update" in r) for r in logged):
            raise XlsrError(f"{log_path}: none of its records has both a `split` name and an `update` number "
                            f"(is this a run's log.jsonl?)")
        raise XlsrError(f"{log_path}: no logged updates yet")
    if not logged_panels(records):
        raise XlsrError(f"{log_path}: none of its {len(records)} logged updates holds a value to plot "
                        f"(loss, lr, grad_norm, per, ...)")
    out = Path(out_png) if out_png else run_dir / "curves.png"
    if out.is_dir():
        raise XlsrError(f"{out}: is a folder; give an image file name (e.g. {out / 'curves.png'})")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise XlsrError(f"{out}: not an image file name; end it in {', '.join(IMAGE_SUFFIXES)}")
    fig = draw_training_curves(records, str(run_dir), aimed_shares=_aimed_shares(run_dir / SAMPLING_REPORT))
    out.parent.mkdir(parents=True, exist_ok=True)  # as every other output is made
    # to a temporary name, then renamed: a stop while drawing leaves the previous image whole (format= because the
    # temporary name has another ending)
    write_file(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lower()[1:], dpi=100))
    return out


def is_update_record(record) -> bool:
    """A log.jsonl record of one update's values: a `split` name and an `update` number (warnings have neither)."""
    return (isinstance(record, dict) and isinstance(record.get("split"), str)
            and isinstance(record.get("update"), int | float) and not isinstance(record.get("update"), bool))


def require_log(run_dir: Path) -> Path:
    """RUN/log.jsonl; one XlsrError line naming what RUN is instead: missing, a file, or a folder of runs (a demo's)."""
    log_path = run_dir / "log.jsonl"
    if log_path.is_file():
        return log_path
    if not run_dir.exists():
        raise XlsrError(f"{log_path}: no training log; there is no folder {run_dir}")
    if not run_dir.is_dir():
        hint = f"; give its folder, {run_dir.parent}" if run_dir.name == "log.jsonl" else ""
        raise XlsrError(f"{run_dir}: a file, not a run folder (the folder that holds log.jsonl){hint}")
    # e.g. a demo's folder: pretrain_live/ and finetune/<init>/seed<k>/ hold its runs (three levels at most: the walk
    # stays short in a large folder); the nearest first
    below = [p.parent for depth in range(1, 4) for p in sorted(run_dir.glob("/".join(["*"] * depth + ["log.jsonl"])))
             if p.is_file()]
    if not below:
        raise XlsrError(f"{log_path}: no training log (is {run_dir} a run folder?)")
    named = ", ".join(str(p) for p in below[:3]) + (f" and {len(below) - 3} more" if len(below) > 3 else "")
    raise XlsrError(f"{log_path}: no training log; {run_dir} holds run folders: {named}; plot one of them")


def draw_training_curves(records: list[dict], title: str, aimed_shares: dict[str, float] | None = None):
    """A matplotlib Figure with one panel per PANELS entry that `records` (log.jsonl lines with a split) hold, and
    for pretraining each language's share of the audio trained on (dashed: `aimed_shares`, p_l, where given)."""
    splits = sorted({r["split"] for r in records}, key=lambda s: (s != "train", s != "valid", s))
    panels = logged_panels(records)
    trained = _trained_shares(records)
    cols = 3
    rows = -(-(len(panels) + bool(trained)) // cols)
    fig = Figure(figsize=(5 * cols, 3.4 * rows))
    FigureCanvasAgg(fig)  # drawn on the Agg canvas directly: no pyplot, no display, no global backend state
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (panel_title, keys) in zip(axes.flat, panels):
        for key in keys:
            _draw_key(ax, records, splits, key, keys)
        ax.set_title(panel_title)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
        if panel_title.startswith("learning"):
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.legend(fontsize=7)
    if trained:
        _draw_trained_shares(axes.flat[len(panels)], trained, aimed_shares or {})
    for ax in list(axes.flat)[len(panels) + bool(trained):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw_key(ax, records: list[dict], splits: list[str], key: str, keys: tuple[str, ...]) -> None:
    """One key's curve per split (one legend entry for all languages), and its value at initialisation if logged."""
    labelled_languages = False
    for split in splits:
        pts = [(r["update"], r[key]) for r in records if r["split"] == split and isinstance(r.get(key), int | float)]
        if not pts:
            continue
        xs, ys = zip(*pts)
        name = f"{split} {key}" if len(keys) > 1 else split
        if split.startswith("valid_"):
            # One thin line per language, one legend entry for all of them: with tens of languages a
            # legend entry each would cover the panel.
            label = None if labelled_languages else name.replace(split, "valid, per language")
            labelled_languages = True
            ax.plot(xs, ys, ".-", lw=0.7, ms=2, alpha=0.45, color="grey" if key == keys[0] else "tan", label=label)
        else:
            line, = ax.plot(xs, ys, "-" if split == "train" else "o-", lw=1.6, ms=3, label=name)
            init = [r[key + INIT_SUFFIX] for r in records
                    if r["split"] == split and isinstance(r.get(key + INIT_SUFFIX), int | float)]
            if init:  # the latest reference: the one the collapse warning compares with
                ax.axhline(init[-1], ls="--", lw=1.0, color=line.get_color(), label=f"{key} at initialisation")


LEGEND_LANGUAGES = 12  # more languages than this: their lines without a legend entry each


def _trained_shares(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Pretraining's train records as each language's share of the audio trained on so far, by update:
    {lang: [(update, share)]}; empty for a run that did not log `trained_s.<lang>`."""
    shares: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if r["split"] != "train":
            continue
        seconds = {k[len(TRAINED_KEY):]: v for k, v in r.items()
                   if k.startswith(TRAINED_KEY) and isinstance(v, int | float)}
        total = sum(seconds.values())
        for lang, v in seconds.items():
            if total > 0:
                shares.setdefault(lang, []).append((r["update"], v / total))
    return shares


def _draw_trained_shares(ax, shares: dict[str, list[tuple[float, float]]], aimed: dict[str, float]) -> None:
    """One line per language: its share of the audio trained on so far, and dashed in its colour the share p_l that
    α sampling aims at (where its run's sampling.json says)."""
    for lang in sorted(shares, key=lambda lang: -shares[lang][-1][1]):
        xs, ys = zip(*shares[lang])
        line, = ax.plot(xs, [100 * y for y in ys], "-", lw=1.2,
                        label=lang if len(shares) <= LEGEND_LANGUAGES else None)
        if lang in aimed:
            ax.axhline(100 * aimed[lang], ls="--", lw=0.8, color=line.get_color())
    ax.set_title("share of audio trained on (%" + (", dashed: p_l)" if aimed else ")"))
    ax.set_xlabel("update")
    ax.grid(alpha=0.3)
    if len(shares) <= LEGEND_LANGUAGES:
        ax.legend(fontsize=7, ncol=2)


def _aimed_shares(path: Path) -> dict[str, float]:
    """{lang: p_l} from a pretraining run's sampling.json; {} where it is missing or not as written (the curves
    are drawn without it)."""
    try:
        languages = json.loads(path.read_text(encoding="utf-8"))["languages"]
        return {str(lang): float(v["p"]) for lang, v in languages.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
