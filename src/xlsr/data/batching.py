"""Batches for pretraining (cropped to the shortest, no padding) and fine-tuning (padded, with labels).

Each epoch is planned up front and identically on every rank: utterances sorted by length, packed
into batches under `max_tokens` samples, batch order shuffled, then rank r takes batches r, r+W, ...
Loading runs in DataLoader workers; a bad file is logged and skipped, and when more than
`max_bad_share` of an epoch's files are bad the loader stops with an XlsrError. The loader's
`state_dict()` (epoch + batches already yielded) lets a run resume at the exact next batch.

With `augment` (an `xlsr.data.augment.AugmentSpec`) each item's effects are drawn while the epoch is planned,
from (seed, epoch, item), and applied in the worker: the same on resume and whatever the number of workers,
and batches are packed with the lengths speed perturbation gives. Babble noise draws its talkers from a
few utterances of the same data, loaded once per worker. In fine-tuning, a speed that would leave an utterance
fewer CNN frames than its label needs is not applied (it plays at speed 1; counted in a warning per epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from xlsr.data.audio import load_audio, normalize_waveform
from xlsr.data.augment import AugmentSpec, EffectDraw, apply_effects, augmented_length
from xlsr.data.batch_plan import (
    BatchPlan,
    babble_talkers,
    check_rank,
    draw_epoch_effects,
    pack_batches,
    pack_spans,
    shard,
)
from xlsr.data.label_ids import LabelIds, encode_labels
from xlsr.data.manifest import Utterance
from xlsr.data.sampling import LanguageSampler
from xlsr.data.utterance_index import UtteranceIndex, as_index
from xlsr.data.worker_signals import ignore_stop_signals
from xlsr.errors import AudioError, XlsrError
from xlsr.text.labels import ctc_min_frames

log = logging.getLogger(__name__)


@dataclass
class PretrainBatch:
    """Equal-length crops: waveforms (B, S) float32, lengths (B,) all S, one language code per row."""

    waveforms: torch.Tensor
    lengths: torch.Tensor
    langs: list[str]


@dataclass
class FinetuneBatch:
    """Zero-padded waveforms (B, S) with lengths (B,); labels (B, L) long padded with 0, label_lengths (B,)."""

    waveforms: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    label_lengths: torch.Tensor
    langs: list[str]
    ids: list[str]


def pad_waveforms(waves: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D waveforms -> zero-padded (B, S) float32 and their lengths (B,) long."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lengths.max()))
    for row, w in enumerate(waves):
        batch[row, : len(w)] = torch.as_tensor(w)
    return batch, lengths


@dataclass
class _Loaded:
    batch: PretrainBatch | FinetuneBatch | None
    bad: list[str] = field(default_factory=list)
    short: int = 0


class _BatchDataset(Dataset):
    """Loads and collates one planned batch (keyed by its plan) in a worker process."""

    def __init__(self, utts: UtteranceIndex, *, pretrain: bool, normalize: bool,
                 min_sample_size: int = 0, max_sample_size: int | None = None,
                 labels: LabelIds | None = None, babble: Sequence[int] = ()) -> None:
        # an index, not a list of objects: forked workers share its arrays (memory-mapped or never written)
        self.utts, self.pretrain, self.normalize = utts, pretrain, normalize
        self.min_sample_size, self.max_sample_size, self.labels = min_sample_size, max_sample_size, labels
        self.babble_indices = tuple(babble)  # talkers for babble noise, loaded on first use in each worker
        self._babble: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, plan: BatchPlan) -> _Loaded:
        loaded, bad, short = [], [], 0
        for k, i in enumerate(plan.indices):
            draw = plan.effects[k] if plan.effects else None
            try:
                x = load_audio(self.utts.audio(i), normalize=self.normalize and draw is None)
            except AudioError as exc:
                bad.append(str(exc))
                continue
            if draw is not None:
                x = self._augment(x, draw)
            if self.pretrain and len(x) < max(self.min_sample_size, 1):
                short += 1  # the manifest said long enough; the decoded audio is not
                continue
            loaded.append((i, x))
        if not loaded:
            return _Loaded(None, bad, short)
        collate = self._crop if self.pretrain else self._pad
        return _Loaded(collate(loaded, np.random.default_rng(plan.seed)), bad, short)

    def _augment(self, x: np.ndarray, draw: EffectDraw) -> np.ndarray:
        """The drawn effects on raw audio, then the per-utterance normalization if the model wants it."""
        if draw.noise_kind == "babble":
            if self._babble is None:
                self._babble = []
                for i in self.babble_indices:
                    try:
                        self._babble.append(load_audio(self.utts.audio(i)))
                    except AudioError:
                        pass  # counted where the utterance itself is loaded
            if not self._babble:
                draw = replace(draw, noise_kind="pink")  # no readable talker: noise of another colour
        x = apply_effects(x, draw, babble=self._babble)
        return normalize_waveform(x) if self.normalize else x

    def _crop(self, loaded: list[tuple[int, np.ndarray]], rng: np.random.Generator) -> PretrainBatch:
        return crop_batch([x for _, x in loaded], [self.utts.lang(i) for i, _ in loaded], rng, self.max_sample_size)

    def _pad(self, loaded: list[tuple[int, np.ndarray]], rng: np.random.Generator) -> FinetuneBatch:
        return pad_batch([x for _, x in loaded], [self.labels[i] for i, _ in loaded],
                         [self.utts.lang(i) for i, _ in loaded], [self.utts.utterance_id(i) for i, _ in loaded])


def crop_batch(waves: Sequence[np.ndarray], langs: list[str], rng: np.random.Generator,
               max_sample_size: int | None = None) -> PretrainBatch:
    """A pretraining batch: a random window of the shortest length (≤ max_sample_size) from each waveform."""
    size = min(len(x) for x in waves)
    if max_sample_size:
        size = min(size, max_sample_size)
    rows = []
    for x in waves:
        start = int(rng.integers(0, len(x) - size + 1))  # a random window per utterance
        rows.append(x[start:start + size])
    return PretrainBatch(waveforms=torch.from_numpy(np.stack(rows)),
                         lengths=torch.full((len(rows),), size, dtype=torch.long), langs=list(langs))


def pad_batch(waves: Sequence[np.ndarray], label_rows: Sequence[Sequence[int] | np.ndarray], langs: list[str],
              ids: list[str]) -> FinetuneBatch:
    """A fine-tuning batch: zero-padded waveforms and label ids (padded with 0) with their lengths."""
    padded, lengths = pad_waveforms(waves)
    label_lengths = [len(r) for r in label_rows]
    labels = torch.zeros(len(waves), max(max(label_lengths), 1), dtype=torch.long)
    for row, label_ids in enumerate(label_rows):
        labels[row, :len(label_ids)] = torch.tensor(label_ids, dtype=torch.long)
    return FinetuneBatch(waveforms=padded, lengths=lengths, labels=labels,
                         label_lengths=torch.tensor(label_lengths), langs=list(langs), ids=list(ids))


class _PlanSampler(Sampler):
    """Yields the remaining batch plans of the current epoch; swapped by the loader before each pass."""

    def __init__(self) -> None:
        self.plans: list[BatchPlan] = []

    def __iter__(self) -> Iterator[BatchPlan]:
        return iter(list(self.plans))

    def __len__(self) -> int:
        return len(self.plans)


def _unbatched(loaded: _Loaded) -> _Loaded:
    return loaded


class BatchLoader:
    """An epoch-aware, resumable loader over planned batches (see the module docstring)."""

    def __init__(self, dataset: _BatchDataset, plan_epoch, *, num_workers: int = 0, prefetch_factor: int = 2,
                 max_bad_share: float = 0.05) -> None:
        self.dataset, self._plan_epoch = dataset, plan_epoch
        self.max_bad_share = max_bad_share
        self.epoch, self.position = 0, 0
        self.bad_files = 0  # over the whole run
        self.epoch_bad_files = 0
        self.short_files = 0
        self._plans: list[BatchPlan] | None = None
        self.sampler: LanguageSampler | None = None  # pretraining: the language table for logs
        self._sampler = _PlanSampler()
        # a private generator: DataLoader draws a worker base seed per epoch, and drawing it from the global
        # RNG would shift dropout and masks after a mid-epoch resume
        kwargs = {"num_workers": num_workers, "batch_size": None, "sampler": self._sampler,
                  "collate_fn": _unbatched, "generator": torch.Generator().manual_seed(0)}
        if num_workers > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=ignore_stop_signals)
        self._loader = DataLoader(dataset, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Go to epoch `epoch`. The current epoch keeps its position (so a resumed run may call this)
        unless it has been fully consumed, in which case it starts over."""
        if epoch != self.epoch or self.position >= len(self):
            self.epoch, self.position, self.epoch_bad_files = int(epoch), 0, 0
            self._plans = None

    def plans(self) -> list[BatchPlan]:
        """This rank's batch plans for the current epoch."""
        if self._plans is None:
            self._plans = self._plan_epoch(self.epoch)
        return self._plans

    def __len__(self) -> int:
        return len(self.plans())

    def files_in_epoch(self) -> int:
        """Number of utterances this rank loads in the current epoch."""
        return sum(len(p.indices) for p in self.plans())

    def __iter__(self) -> Iterator[PretrainBatch | FinetuneBatch]:
        self._sampler.plans = self.plans()[self.position:]
        limit = self.max_bad_share * self.files_in_epoch()
        for loaded in self._loader:
            self.position += 1
            for message in loaded.bad:
                log.warning("skipping bad audio: %s", message)
            self.bad_files += len(loaded.bad)
            self.epoch_bad_files += len(loaded.bad)
            self.short_files += loaded.short
            if self.epoch_bad_files > limit:
                raise XlsrError(f"{self.epoch_bad_files} of {self.files_in_epoch()} audio files in epoch "
                                f"{self.epoch} are unreadable, more than max_bad_share={self.max_bad_share:g} "
                                f"(last: {loaded.bad[-1] if loaded.bad else '?'})")
            if loaded.batch is not None:
                yield loaded.batch

    def state_dict(self) -> dict:
        """Epoch, batches already yielded in it, and the bad-file counters."""
        return {"epoch": self.epoch, "position": self.position, "bad_files": self.bad_files,
                "epoch_bad_files": self.epoch_bad_files, "short_files": self.short_files}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields batch `position` of epoch `epoch`."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.bad_files, self.epoch_bad_files = int(state["bad_files"]), int(state["epoch_bad_files"])
        self.short_files = int(state.get("short_files", 0))
        self._plans = None


def pretrain_loader(utts: UtteranceIndex | Sequence[Utterance], *, max_tokens: int, min_sample_size: int = 32000,
                    max_sample_size: int = 320000, alpha: float = 0.5, seed: int = 0, rank: int = 0,
                    world_size: int = 1, num_workers: int = 0, normalize: bool = False,
                    max_bad_share: float = 0.05, epoch_size: int | None = None,
                    prefetch_factor: int = 2, augment: AugmentSpec | None = None,
                    max_utterances: int | None = None) -> BatchLoader:
    """Pretraining batches: α-resampled languages, crops to the batch's shortest (≤ max_sample_size).

    Utterances shorter than `min_sample_size` samples are skipped. `max_tokens` bounds B × crop length, and
    `max_utterances` (None: no cap) bounds B (fairseq's dataset.batch_size).
    `augment`: acoustic effects applied on the fly (module docstring); an upsampled utterance drawn twice in
    an epoch gets its own effects each time.
    """
    check_rank(rank, world_size)
    augment = augment if augment is not None and augment.enabled else None
    if max_sample_size and max_sample_size > max_tokens:
        raise XlsrError(f"max_tokens ({max_tokens}) is smaller than max_sample_size ({max_sample_size})")
    if max_utterances is not None and max_utterances < 1:
        raise XlsrError(f"max_utterances: must be at least 1 (or None: no cap), got {max_utterances}")
    utts = as_index(utts)
    kept = _selected(utts, utts.num_samples >= min_sample_size)
    if len(kept) < len(utts):
        log.info("skipping %d of %d utterances shorter than min_sample_size=%d",
                 len(utts) - len(kept), len(utts), min_sample_size)
    if not len(kept):
        raise XlsrError(f"no utterance is at least min_sample_size={min_sample_size} samples long")
    sampler = LanguageSampler(kept, alpha=alpha, seed=seed, epoch_size=epoch_size)
    lengths = kept.num_samples

    def plan_epoch(epoch: int) -> list[BatchPlan]:
        order = sampler.epoch_indices(epoch)  # already shuffled: random ties
        # packed by slot (position in `order`): an utterance drawn twice has two lengths under speed perturbation
        draws = draw_epoch_effects(augment, seed, epoch, len(order))
        slot_lengths = lengths[order] if augment is None else \
            np.array([augmented_length(int(lengths[i]), d) for i, d in zip(order, draws)])
        slots, bounds = pack_spans(slot_lengths, np.arange(len(order)), max_tokens, crop_to_shortest=True,
                                   max_sample_size=max_sample_size, max_utterances=max_utterances)
        members = order[slots]
        perm = np.random.default_rng([seed, epoch, 1]).permutation(len(bounds) - 1)
        plans = [BatchPlan(tuple(members[bounds[b]:bounds[b + 1]].tolist()), (seed, epoch, int(b)),
                           tuple(draws[j] for j in slots[bounds[b]:bounds[b + 1]]) if augment is not None else None)
                 for b in perm]
        return shard(plans, rank, world_size, equal=True)

    dataset = _BatchDataset(kept, pretrain=True, normalize=normalize, min_sample_size=min_sample_size,
                            max_sample_size=max_sample_size, babble=babble_talkers(len(kept), seed, augment))
    loader = BatchLoader(dataset, plan_epoch, num_workers=num_workers, prefetch_factor=prefetch_factor,
                         max_bad_share=max_bad_share)
    loader.sampler = sampler  # the language table (hours, weights) for logs
    return loader


def length_limit(max_tokens: int, max_sample_size: int | None) -> int:
    """The longest utterance, in samples, that a fine-tuning batch takes: max_tokens, or max_sample_size if smaller."""
    return min(max_tokens, max_sample_size or max_tokens)


def finetune_loader(utts: UtteranceIndex | Sequence[Utterance], vocab, *, max_tokens: int, shuffle: bool = True, seed: int = 0,
                    normalize: bool = False, label_field: str = "phones", rank: int = 0, world_size: int = 1,
                    num_workers: int = 0, max_bad_share: float = 0.05, max_sample_size: int | None = None,
                    oov: str = "error", prefetch_factor: int = 2, augment: AugmentSpec | None = None,
                    keep_long: bool = False, num_frames: Callable[[int], int] | None = None) -> BatchLoader:
    """Fine-tuning batches: zero-padded waveforms with lengths, label ids from `vocab.encode`.

    `label_field`: "phones" or "text"/"chars". Utterances longer than `max_tokens` (or `max_sample_size`)
    are skipped with a warning, or with `keep_long` (validation: no gradients) kept, one longer than
    `max_tokens` alone in its batch. `oov`: "error" | "warn" | "unk" for label symbols outside the vocabulary.
    With shuffle=False (evaluation) batches are in length order and no batch is dropped under DDP.
    `augment`: acoustic effects applied on the fly (module docstring), for training data; `num_frames` (the
    model's frame count of a length), when given, keeps speed perturbation from leaving a label more symbols
    than frames.
    """
    check_rank(rank, world_size)
    augment = augment if augment is not None and augment.enabled else None
    limit = length_limit(max_tokens, max_sample_size)
    utts = as_index(utts)
    kept = utts if keep_long else _selected(utts, utts.num_samples <= limit)
    if len(kept) < len(utts):
        log.warning("skipping %d of %d utterances longer than %d samples", len(utts) - len(kept), len(utts), limit)
    if not len(kept):
        raise XlsrError(f"no utterance fits in max_tokens={max_tokens}")
    labels = encode_labels(kept, vocab, label_field, oov)
    lengths = kept.num_samples

    def plan_epoch(epoch: int) -> list[BatchPlan]:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(kept)) if shuffle else np.arange(len(kept))
        draws = draw_epoch_effects(augment, seed, epoch, len(kept))  # per utterance: each comes once an epoch
        if augment is not None and augment.speed is not None and num_frames is not None:
            draws = _label_fitting_speeds(draws, lengths, labels, num_frames, epoch)
        epoch_lengths = lengths if augment is None else \
            np.array([augmented_length(int(n), d) for n, d in zip(lengths, draws)])
        batches = pack_batches(epoch_lengths, order, max_tokens, crop_to_shortest=False)
        if shuffle:
            batches = [batches[b] for b in rng.permutation(len(batches))]
        plans = [BatchPlan(tuple(b), (seed, epoch, n), tuple(draws[i] for i in b) if augment is not None else None)
                 for n, b in enumerate(batches)]
        return shard(plans, rank, world_size, equal=shuffle)

    dataset = _BatchDataset(kept, pretrain=False, normalize=normalize, labels=labels,
                            babble=babble_talkers(len(kept), seed, augment))
    return BatchLoader(dataset, plan_epoch, num_workers=num_workers, prefetch_factor=prefetch_factor,
                       max_bad_share=max_bad_share)


def _label_fitting_speeds(draws: list[EffectDraw | None], lengths: np.ndarray, labels: LabelIds,
                          num_frames: Callable[[int], int], epoch: int) -> list[EffectDraw | None]:
    """`draws` without the speed perturbation of the utterances it would leave fewer frames than their label needs
    (a faster speed shortens the audio after the CTC filter passed it: CTC would have no path, zero_infinity a 0 loss)."""
    fitted, reverted = list(draws), 0
    for i, draw in enumerate(draws):
        if draw is None or draw.speed is None or draw.speed <= 1.0:
            continue  # a slower speed only lengthens
        if num_frames(augmented_length(int(lengths[i]), draw)) < ctc_min_frames(labels[i]):
            rest = replace(draw, speed=None)
            fitted[i] = None if rest == EffectDraw(key=draw.key) else rest
            reverted += 1
    if reverted:
        log.warning("epoch %d: %d of %d utterances play at speed 1: the drawn speed would leave fewer frames than "
                    "their labels need", epoch, reverted, len(draws))
    return fitted


def _selected(utts: UtteranceIndex, keep: np.ndarray) -> UtteranceIndex:
    """`utts` where `keep` holds (itself when it holds everywhere: no copy of its columns)."""
    return utts if keep.all() else utts.subset(np.flatnonzero(keep))
