"""A short linear probe during pretraining: how well a linear CTC head on frozen features transcribes a fixed
labeled slice, for the CNN features (after feature_norm) and for the final Transformer layer (`probe_every`).

Per probe, the frozen encoder's features of the slice are computed once; one linear head per view is trained for
`steps` Adam steps on 4 of every 5 utterances and scored (greedy CTC, PER or CER) on the fifth. The heads start at
zero and batches come from a seeded generator: the probe of a given model is deterministic and draws nothing from
the global random state, so training continues exactly as it would without it. Features are standardized per
channel with the training part's statistics (a linear map: a linear head's capacity is unchanged), so one learning
rate suits both views whatever their scale. The layer-wise probe with its report and plot is `xlsr probe`
(analysis/); this is a slice small enough for a run's validation, its heads trained by train/linear_probe.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xlsr.data.audio import load_audio
from xlsr.data.batching import pad_waveforms
from xlsr.data.manifest import read_manifest
from xlsr.errors import XlsrError
from xlsr.model.config import cnn_frames
from xlsr.model.ctc import ctc_best_path
from xlsr.rates import SAMPLE_RATE
from xlsr.text.labels import LABEL_FIELD, filter_utterances, label_of
from xlsr.text.metrics import error_rate
from xlsr.text.vocab import Vocabulary
from xlsr.train.linear_probe import HeadBatch, train_heads, zero_heads

MAX_UTTERANCES = 200  # a short probe: a few minutes of speech; the full one is `xlsr probe`
MAX_BATCH_SAMPLES = 64 * SAMPLE_RATE  # padded audio per encoder forward pass (memory only)
HEAD_BATCH = 8  # utterances per head-training step
HEAD_LR = 5e-3  # Adam, cosine decay to 0 over the steps
HELD_OUT_EVERY = 5  # every 5th utterance of the slice scores the heads; the others train them
METRIC = {"phones": ("per", "phone"), "chars": ("cer", "char")}  # probe_labels -> (log key suffix, metric unit)
VIEWS = ("feature", "context")  # CNN features after feature_norm, final Transformer layer


@dataclass
class ProbeSlice:
    """The fixed labeled audio a probe trains and scores on."""

    waveforms: list[np.ndarray]
    label_ids: list[list[int]]
    refs: list[str]
    vocab: Vocabulary
    labels: str  # "phones" or "chars"

    @property
    def held_out(self) -> list[bool]:
        """Which utterances score the heads (every HELD_OUT_EVERY-th) rather than train them."""
        return [i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 for i in range(len(self.waveforms))]


def read_probe_slice(manifests: list[str], labels: str, *, conv_layers, normalize: bool,
                     max_utterances: int = MAX_UTTERANCES) -> ProbeSlice:
    """Up to `max_utterances` labeled utterances spread evenly over `manifests`, loaded; one XlsrError line if unusable."""
    field = LABEL_FIELD[labels]
    utts = []
    for path in manifests:
        labeled = [u for u in read_manifest(path) if label_of(u, labels)]
        if not labeled:
            raise XlsrError(f"probe_data {path}: no utterance has a {field!r} label (probe_labels: {labels})")
        utts += labeled
    vocab = Vocabulary.build([label_of(u, labels) for u in utts], kind=labels)

    utts, _ = filter_utterances(utts, vocab, labels, lambda num_samples: cnn_frames(num_samples, conv_layers))
    if len(utts) < HELD_OUT_EVERY:
        raise XlsrError(f"probe_data {', '.join(map(str, manifests))}: {len(utts)} usable {field!r}-labeled "
                        f"utterances; the probe needs at least {HELD_OUT_EVERY}")
    picked = np.unique(np.linspace(0, len(utts) - 1, min(max_utterances, len(utts))).round().astype(int))
    utts = [utts[i] for i in picked]
    refs = [label_of(u, labels) for u in utts]
    return ProbeSlice([load_audio(Path(u.audio), normalize=normalize) for u in utts],
                      [vocab.encode(r) for r in refs], refs, vocab, labels)


@torch.no_grad()
def encoder_views(encoder: nn.Module, waveforms: list[np.ndarray], device: torch.device) -> list[list[torch.Tensor]]:
    """Per view (VIEWS), each utterance's frames (T_i, D) on the CPU in fp32, from an eval forward without masks."""
    views: list[list[torch.Tensor]] = [[None] * len(waveforms) for _ in VIEWS]
    order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
    start = 0
    while start < len(order):  # length-sorted batches under MAX_BATCH_SAMPLES padded samples
        end = start + 1
        while end < len(order) and (end + 1 - start) * len(waveforms[order[end]]) <= MAX_BATCH_SAMPLES:
            end += 1
        rows = order[start:end]
        wave, lengths = pad_waveforms([waveforms[i] for i in rows])
        out = encoder(wave.to(device), lengths.to(device))
        for row, (i, n) in enumerate(zip(rows, out.frame_lengths.tolist())):
            views[0][i] = out.extract_features[row, :n].float().cpu()
            views[1][i] = out.last_hidden_state[row, :n].float().cpu()
        start = end
    return views


def standardized(frames: list[torch.Tensor], train: list[bool]) -> list[torch.Tensor]:
    """(x - mean) / std per channel with the statistics of the training utterances' frames."""
    pooled = torch.cat([f for f, t in zip(frames, train) if t])
    mean, std = pooled.mean(0), pooled.std(0, correction=0)
    scale = torch.where(std > 1e-6, std, torch.ones_like(std))  # a channel without variance is only centred
    return [(f - mean) / scale for f in frames]


def pad_frames(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) zero-padded frames and their lengths (B,)."""
    lengths = torch.tensor([f.shape[0] for f in frames])
    x = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1])
    for row, f in enumerate(frames):
        x[row, : f.shape[0]] = f
    return x, lengths


def pad_labels(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) label ids padded with 0 and their lengths (B,)."""
    lengths = torch.tensor([len(i) for i in ids])
    y = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, i in enumerate(ids):
        y[row, : len(i)] = torch.tensor(i)
    return y, lengths


def random_batches(views: list[list[torch.Tensor]], label_ids: list[list[int]], *, steps: int,
                   seed: int) -> Iterator[HeadBatch]:
    """`steps` batches of HEAD_BATCH utterances drawn anew each step by a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)  # not the global one: the training run's draws stay its own
    n = len(label_ids)
    for _ in range(steps):
        rows = torch.randperm(n, generator=generator)[: min(HEAD_BATCH, n)].tolist()
        labels, label_lengths = pad_labels([label_ids[r] for r in rows])
        padded = [pad_frames([frames[r] for r in rows]) for frames in views]  # the views' lengths are equal
        yield HeadBatch([x for x, _ in padded], padded[0][1], labels, label_lengths)


@torch.no_grad()
def transcribe(head: nn.Linear, frames: list[torch.Tensor], vocab: Vocabulary, device: torch.device) -> list[str]:
    """Greedy CTC transcripts of each utterance's frames by `head`."""
    x, lengths = pad_frames(frames)
    return [vocab.decode(ids) for ids in ctc_best_path(head(x.to(device)), lengths)]


def run_probe(encoder: nn.Module, data: ProbeSlice, *, steps: int, seed: int, device: torch.device) -> dict[str, float]:
    """Error rate of a linear CTC head on each view of the frozen `encoder`: {"probe_feature_per": ..., ...}."""
    suffix, unit = METRIC[data.labels]
    held_out = data.held_out
    train = [not h for h in held_out]
    views = [standardized(v, train) for v in encoder_views(encoder, data.waveforms, device)]
    train_views = [[f for f, t in zip(v, train) if t] for v in views]
    batches = random_batches(train_views, [ids for ids, t in zip(data.label_ids, train) if t], steps=steps, seed=seed)
    heads = zero_heads([v[0].shape[1] for v in views], len(data.vocab), device)
    with torch.enable_grad():  # validation runs without gradients; the heads need them
        for _ in train_heads(heads, batches, lr=HEAD_LR, total_steps=steps):
            pass  # the generator trains as it is iterated; the per-step losses are not needed here
    refs = [r for r, h in zip(data.refs, held_out) if h]
    logs = {}
    for name, head, v in zip(VIEWS, heads, views):
        hyps = transcribe(head, [f for f, h in zip(v, held_out) if h], data.vocab, device)
        logs[f"probe_{name}_{suffix}"] = error_rate(refs, hyps, unit)
    return logs
