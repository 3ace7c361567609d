"""`probe`: how much phone (or character) information each layer of a frozen encoder carries, linearly.

In the style of SUPERB's phoneme-recognition task and wav2vec 2.0's layer-wise analyses: for the CNN output and
every Transformer layer, a linear CTC head is trained on the frozen features of a labeled train manifest, and
its greedy transcripts of a test manifest give that layer's PER (CER for characters). Features are computed once
per model (see probe_features) and standardised per channel with the train set's statistics, so one learning
rate suits every layer whatever its scale; the standardisation is linear, so a linear head's capacity is
unchanged. All heads train together (one Adam over independent heads: the same as training each alone), in
train/linear_probe.py, the loop the pretraining probe uses too.

    checkpoints + train/test manifests -> features per layer -> heads -> OUT/probe.json + OUT/probe.png
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xlsr.analysis.output_folder import REPORT_MARK_KEY, Outputs, check_output_folder, remove_own_figures
from xlsr.analysis.probe_features import (
    CNN,
    MAX_BATCH_SAMPLES,
    FeatureBatch,
    LabeledAudio,
    Layer,
    UtteranceFeatures,
    batch_features,
    check_memory,
    compute_features,
    encoder_of,
    estimate_memory,
    parse_layers,
    read_labeled,
    resolve_layers,
)
from xlsr.analysis.probe_plot import PROBE, plot_probe
from xlsr.atomic import json_text, write_json
from xlsr.data.manifest import read_manifest
from xlsr.decode.greedy import greedy_decode
from xlsr.devices import pick_device
from xlsr.errors import XlsrError, require_seed
from xlsr.interop.load import load_pretrained
from xlsr.model.feature_health import channel_scale_spread, effective_dimension
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE
from xlsr.text.metrics import EditCounts, corpus_counts
from xlsr.text.vocab import Vocabulary, format_counts
from xlsr.train.linear_probe import train_heads, zero_heads

log = logging.getLogger(__name__)

JSON_FILE = "probe.json"
PLOT_FILE = "probe.png"
# what a rerun may replace in --out (its earlier outputs, told by their content); anything else there stays
OUTPUTS = Outputs(command=PROBE, report=JSON_FILE, report_keys=("labels", "metric", "train", "test"), arrays={},
                  figures=(PLOT_FILE,))
METRICS = {"phones": ("per", "phone"), "chars": ("cer", "char")}  # --labels -> (report key, metric unit)
CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
# The heads' steps are small (a few utterances); on the 2-core CPU, under load, an epoch took 1.5 s wall with one
# thread and 5.1 s with two (3.5x the CPU time): threads only fight over such steps.
HEAD_THREADS = 1


@dataclass
class ProbeSettings:
    """How the heads are trained; the defaults and the convergence measurements behind them: docs/probe.md.

    On the tiny model and ~4 minutes of labels one model takes ~1.5 CPU minutes (features ~20 s, heads ~70 s).
    """

    epochs: int = 80  # test PER within ~5 points of 160 epochs' on tiny-multilingual (docs/probe.md)
    lr: float = 1e-2  # Adam, cosine decay to 0 over the run
    batch_frames: int = 200  # padded frames per head-training batch (B x longest; 200 frames = 4 s, often 1 utterance)
    max_batch_samples: int = MAX_BATCH_SAMPLES  # padded audio per encoder forward pass (memory only)
    cache_dtype: str = "float32"  # "float16" halves the feature cache for large models or many minutes

    def check(self) -> None:
        """One XlsrError line for unusable settings."""
        if self.epochs < 1:
            raise XlsrError(f"--epochs: need at least 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise XlsrError(f"--lr: need a positive learning rate, got {self.lr}")
        if self.batch_frames < 1:
            raise XlsrError(f"--batch-frames: need at least 1, got {self.batch_frames}")
        if self.max_batch_samples < SAMPLE_RATE:
            raise XlsrError(f"--max-batch-samples: need at least {SAMPLE_RATE} (1 s), got {self.max_batch_samples}")
        if self.cache_dtype not in CACHE_DTYPES:
            raise XlsrError(f"--cache-dtype: {self.cache_dtype!r} is not one of {', '.join(CACHE_DTYPES)}")


@dataclass
class ProbeReport:
    """What `probe` measured (`summary`, as written to probe.json) and the files it wrote."""

    summary: dict
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def layer_statistics(items: list[UtteranceFeatures], k: int) -> dict:
    """Mean and std per channel of layer k's frames, its effective dimension and channel-scale spread."""
    frames = torch.cat([u.features[k] for u in items]).float()  # (N, D)
    mean, std = frames.mean(0), frames.std(0, correction=0)
    # feature_health works in float64: converted once here, the float32 frames are not held beside its copies
    # (probe_features.STATISTICS_BYTES counts what is held)
    frames = frames.double()
    return {"mean": mean, "std": std, "dim": frames.shape[1],
            "effective_dim": effective_dimension(frames), "channel_scale_spread": channel_scale_spread(frames)}


def standardize(items: list[UtteranceFeatures], k: int, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Layer k's features -> (x - mean) / std in place (a channel without variance is only centred)."""
    scale = torch.where(std > 1e-6, std, torch.ones_like(std))
    for u in items:
        x = u.features[k]
        u.features[k] = ((x.float() - mean.to(x.device)) / scale.to(x.device)).to(x.dtype)


def train_probe_heads(heads: nn.ModuleList, batches: list[FeatureBatch], settings: ProbeSettings, *, seed: int,
                      bar=None) -> list[float]:
    """`settings.epochs` epochs of train.linear_probe.train_heads, batches in a seeded order; each head's mean loss
    over the last epoch."""
    rng = np.random.default_rng(seed)
    order = (batches[b] for _ in range(settings.epochs) for b in rng.permutation(len(batches)).tolist())
    total = settings.epochs * len(batches)
    last = torch.zeros(len(heads))
    for step, losses in enumerate(train_heads(heads, order, lr=settings.lr, total_steps=total)):
        if step >= total - len(batches):
            last += losses.cpu() / len(batches)
        if bar is not None:
            bar.update(1)
    return last.tolist()


@torch.no_grad()
def score_heads(heads: nn.ModuleList, batches: list[FeatureBatch], vocab: Vocabulary, unit: str) -> list[EditCounts]:
    """Edit counts of each head's greedy transcripts against the references, summed over `batches`."""
    device = next(heads.parameters()).device
    refs = [r for b in batches for r in b.refs]
    counts = []
    for k, head in enumerate(heads):
        hyps = [h.text for b in batches
                for h in greedy_decode(head(b.features[k].to(device).float()).cpu(), b.frame_lengths, vocab)]
        counts.append(corpus_counts(refs, hyps, unit))
    return counts


def probe_model(encoder: torch.nn.Module, layers: list[Layer], train: LabeledAudio, test: LabeledAudio,
                vocab: Vocabulary, unit: str, settings: ProbeSettings, *, seed: int, device: torch.device,
                show_progress: bool = True) -> tuple[list[dict], dict]:
    """Probe one encoder: per-layer results (in `layers` order) and the wall seconds of each stage."""
    encoder = encoder.to(device)
    dtype = CACHE_DTYPES[settings.cache_dtype]
    t0 = time.perf_counter()
    with progress(total=len(train.waveforms) + len(test.waveforms), desc="features", unit="utt",
                  disable=not show_progress) as bar:
        train_u, test_u = (compute_features(encoder, data, vocab, layers, device=device, cache_dtype=dtype,
                                            max_batch_samples=settings.max_batch_samples, bar=bar)
                           for data in (train, test))
    encoder.cpu()  # the heads need the memory more than the encoder does now
    t1 = time.perf_counter()
    stats = []
    for k in range(len(layers)):
        stats.append(layer_statistics(train_u, k))
        standardize(train_u, k, stats[k]["mean"], stats[k]["std"])
        standardize(test_u, k, stats[k]["mean"], stats[k]["std"])
    # consumed: each utterance's features are freed once copied into its batch, so the cache is never held twice
    train_b = batch_features(train_u, settings.batch_frames, consume=True)
    test_b = batch_features(test_u, settings.batch_frames, consume=True)
    heads = zero_heads([s["dim"] for s in stats], len(vocab), device)
    with progress(total=settings.epochs * len(train_b), desc="heads", unit="step", disable=not show_progress) as bar, \
            torch_threads(HEAD_THREADS):
        train_loss = train_probe_heads(heads, train_b, settings, seed=seed, bar=bar)
    counts = score_heads(heads, test_b, vocab, unit)
    t2 = time.perf_counter()
    results = [{"layer": layer, "error_rate": c.rate, "counts": c.to_dict(), "train_ctc": loss, "dim": s["dim"],
                "effective_dim": s["effective_dim"], "channel_scale_spread": s["channel_scale_spread"]}
               for layer, c, loss, s in zip(layers, counts, train_loss, stats)]
    return results, {"features": round(t1 - t0, 2), "heads": round(t2 - t1, 2)}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` intra-op CPU threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_distinct_models(paths: list[str]) -> None:
    """XlsrError naming a checkpoint given twice (two spellings of one path count as one): it would be probed twice
    and shown as two identical columns, more likely a typo for another checkpoint than meant."""
    seen: dict[str, str] = {}
    for path in paths:
        resolved = os.path.realpath(path)
        if resolved in seen:
            same = "" if seen[resolved] == path else f" (as {seen[resolved]} and {path})"
            raise XlsrError(f"--model {path}: given twice{same}; give each checkpoint once")
        seen[resolved] = path


def display_names(paths: list[str]) -> list[str]:
    """A short label per model for the plot: the folder or file name, the whole path where two would clash."""
    names = [Path(p).name or str(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def _load_models(paths: list[str], layers: list[Layer] | None) -> list[tuple]:
    loaded = []
    for path in paths:
        model = load_pretrained(path)
        encoder = encoder_of(model.model, str(path))
        loaded.append((model, encoder, resolve_layers(layers, model.config.num_layers, str(path))))
    return loaded


def probe(models: str | Path | list[str | Path], train_manifest: str | Path, test_manifest: str | Path,
          out_dir: str | Path, *, layers: str | list | None = "all", labels: str = "phones",
          settings: ProbeSettings | None = None, seed: int = 0, device: str = "cpu", plot: bool = True,
          show_progress: bool = True) -> ProbeReport:
    """Layer-wise linear CTC probe of each model; writes OUT/probe.json (and OUT/probe.png, or without `plot` removes
    an earlier probe's) atomically, again after each model, so that an interrupted run keeps the models it finished
    (Ctrl-C once probe.json holds one: ProbeInterrupted, with the report probe.json holds)."""
    paths = [str(m) for m in ([models] if isinstance(models, (str, Path)) else models)]
    settings = settings or ProbeSettings()
    settings.check()
    if not paths:
        raise XlsrError("--model: give at least one checkpoint")
    check_distinct_models(paths)
    require_seed(seed)  # before any feature is computed
    out_dir = Path(out_dir)
    check_output_folder(out_dir, OUTPUTS, with_figures=plot)  # only over an earlier probe's files
    if labels not in METRICS:
        raise XlsrError(f"--labels: {labels!r} is not one of {', '.join(METRICS)}")
    metric, unit = METRICS[labels]
    torch_device = pick_device(device)
    layer_choice = parse_layers(layers)
    # the manifests before the checkpoints: a wrong --train or --test is said before gigabytes of weights are read
    train_utts, test_utts = read_manifest(train_manifest), read_manifest(test_manifest)
    loaded = _load_models(paths, layer_choice)
    min_samples = max(m.config.receptive_field for m, _, _ in loaded)
    # every waveform and one model's features stay in memory: a run that cannot fit is refused before any audio is
    # read, not killed by the kernel an hour later
    train_samples, test_samples = ([u.num_samples for u in utts
                                    if min_samples <= u.num_samples <= settings.max_batch_samples]
                                   for utts in (train_utts, test_utts))
    check_memory(estimate_memory(train_samples, test_samples,
                                 [(m.config, model_layers) for m, _, model_layers in loaded],
                                 CACHE_DTYPES[settings.cache_dtype]), torch_device)
    train = read_labeled(train_manifest, labels, min_samples=min_samples, max_samples=settings.max_batch_samples,
                         utterances=train_utts)
    test = read_labeled(test_manifest, labels, min_samples=min_samples, max_samples=settings.max_batch_samples,
                        utterances=test_utts)
    overlap = train_test_overlap(train, test)
    vocab = Vocabulary.build(train.labels, labels)
    oov_symbols = symbols_outside_train(train, test, vocab)

    start = time.perf_counter()
    entries, report = [], None
    for path, name, (model, encoder, model_layers) in zip(paths, display_names(paths), loaded):
        summary = None
        # Ctrl-C anywhere in a model's turn (probing, summing up, drawing, writing): the report probe.json holds
        try:
            results, stage_seconds = probe_model(encoder, model_layers, train, test, vocab, unit, settings,
                                                 seed=seed, device=torch_device, show_progress=show_progress)
            for r in results:
                r[metric] = r.pop("error_rate")
            entries.append({"model": path, "name": name, "source_format": model.source_format,
                            "num_layers": model.config.num_layers, "layers": results, "stage_seconds": stage_seconds})
            # written after each model, so that an interrupted run keeps the models it finished
            summary = _summary(entries, train, test, vocab, labels, metric, settings, seed, str(torch_device),
                               several=len(paths) > 1, oov_symbols=oov_symbols)
            summary["train_test_overlap"] = overlap
            summary["seconds"] = round(time.perf_counter() - start, 2)
            report = _write(summary, out_dir, plot)
        except KeyboardInterrupt:
            report = _held(summary, out_dir) or report
            if report is None:
                raise
            raise ProbeInterrupted(report) from None
    return report


class ProbeInterrupted(KeyboardInterrupt):
    """Ctrl-C after some models were probed: `report` is the one probe.json holds, that of the models finished."""

    def __init__(self, report: ProbeReport):
        super().__init__()
        self.report = report


def train_test_overlap(train: LabeledAudio, test: LabeledAudio) -> dict[str, int]:
    """How many test utterances are also train audio, and how many test speakers also speak in train; a warning for
    either, since the probe's test PER then partly measures the training set (or its voices), not held-out speech."""
    files = set(train.audio)
    speakers = {s for s in train.speakers if s is not None}
    overlap = {"test_utterances_in_train": sum(a in files for a in test.audio),
               "test_speakers_in_train": len({s for s in test.speakers if s is not None} & speakers)}
    if overlap["test_utterances_in_train"]:
        log.warning("%s: %d of its %d utterances are also in the train manifest %s (same audio file): the test PER is "
                    "then partly a training error", test.manifest, overlap["test_utterances_in_train"],
                    len(test.audio), train.manifest)
    if overlap["test_speakers_in_train"]:
        log.warning("%s: %d of its speakers also speak in the train manifest %s: the test PER measures known voices",
                    test.manifest, overlap["test_speakers_in_train"], train.manifest)
    return overlap


def symbols_outside_train(train: LabeledAudio, test: LabeledAudio, vocab: Vocabulary) -> int:
    """How many symbols of the test labels never occur in train (a language or script train lacks); a warning naming
    them, since no head can output them and each is an error in the test PER (CER) whatever the layer."""
    oov = vocab.oov_report(test.labels)
    if oov:
        log.warning("%s: its labels hold %d symbol(s) that the train manifest %s never has (%s): no head can output "
                    "them, so each counts as an error", test.manifest, sum(oov.values()), train.manifest,
                    format_counts(oov))
    return sum(oov.values())


def _summary(entries: list[dict], train: LabeledAudio, test: LabeledAudio, vocab: Vocabulary, labels: str,
             metric: str, settings: ProbeSettings, seed: int, device: str, *, several: bool,
             oov_symbols: int) -> dict:
    def data(d: LabeledAudio) -> dict:
        return {"manifest": str(d.manifest), "utterances": len(d.waveforms), "minutes": round(d.minutes, 3),
                "skipped": d.skipped}

    shared = {"labels": labels, "metric": metric, "train": data(train), "test": data(test),
              "test_oov_symbols": oov_symbols, "vocab_size": len(vocab),
              "settings": {**asdict(settings), "head": "linear, zero init", "optimizer": "adam, cosine decay",
                           "standardize": "per channel, train statistics", "device": device},
              "seed": seed}
    if not several:
        return {**entries[0], **shared}
    return {"models": list(entries), **shared}  # a copy: a report keeps its models while the next is appended


def _write(summary: dict, out_dir: Path, plot: bool) -> ProbeReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / JSON_FILE}
    if plot:
        files["plot"] = plot_probe(summary.get("models") or [summary], out_dir / PLOT_FILE, summary["metric"])
    elif removed := remove_own_figures(out_dir, OUTPUTS):  # an earlier run's figure would not match this report
        log.info("%s: removed the earlier probe's %s (--no-plot draws none)", out_dir, ", ".join(removed))
    summary["files"] = {k: p.name for k, p in files.items()}
    summary[REPORT_MARK_KEY] = PROBE  # its figure carries the mark: a rerun knows it by it alone (output_folder.py)
    write_json(files["json"], summary)
    return ProbeReport(summary=summary, out_dir=out_dir, files=files)


def _held(summary: dict | None, out_dir: Path) -> ProbeReport | None:
    """The report of `summary` if probe.json holds it (a Ctrl-C once _write had renamed it in, before the report
    reached its caller); None otherwise: probe.json then holds the previous report, if any."""
    if summary is None or "files" not in summary:  # _write names the files before it writes
        return None
    path = out_dir / JSON_FILE
    try:
        held = path.read_text(encoding="utf-8")
    except OSError:
        return None
    if held != json_text(summary, indent=2) + "\n":  # as write_json writes it
        return None
    return ProbeReport(summary=summary, out_dir=out_dir, files={k: out_dir / n for k, n in summary["files"].items()})


def format_summary(summary: dict) -> str:
    """A plain-text table: one row per layer, one column per model."""
    entries = summary.get("models") or [summary]
    metric = summary["metric"]
    layers = list(dict.fromkeys(r["layer"] for e in entries for r in e["layers"]))
    width = max(12, *(len(e["name"]) + 2 for e in entries))
    rows = [f"{'layer':<6}" + "".join(f"{e['name']:>{width}}" for e in entries)]
    for layer in layers:
        cells = []
        for e in entries:
            r = next((r for r in e["layers"] if r["layer"] == layer), None)
            cells.append(f"{100 * r[metric]:>{width - 1}.1f}%" if r else f"{'-':>{width}}")
        rows.append(f"{layer!s:<6}" + "".join(cells))
    rows.append(f"test {metric.upper()} by layer; linear CTC heads on {summary['train']['minutes']:.1f} min of "
                f"{summary['labels']} labels, tested on {summary['test']['minutes']:.1f} min")
    return "\n".join(rows)


__all__ = ["CNN", "ProbeReport", "ProbeSettings", "format_summary", "probe"]
