"""Batches for pretraining (cropped to the shortest, no padding) and fine-tuning (padded, with labels).

Each epoch is planned up front and identically on every rank: utterances sorted by length, packed
into batches under `max_tokens` samples, batch order shuffled, then rank r takes batches r, r+W, ...
Loading runs in DataLoader workers; a bad file is logged and skipped, and when more than
`max_bad_share` of an epoch's files are bad the loader stops with an XlsrError. The loader's
`state_dict()` (epoch + batches already yielded) lets a run resume at the exact next batch.

With `augment` (an `xlsr.data.augment.AugmentSpec`) each item's effects are drawn while the epoch is planned,
from (seed, epoch, item), and applied in the worker: the same on resume and whatever the number of workers,
and batches are packed with the lengths speed perturbation gives. Babble noise draws its talkers from a
few utterances of the same data, loaded once per worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from xlsr.data.audio import load_audio, normalize_waveform
from xlsr.data.augment import AugmentSpec, EffectDraw, apply_effects, augmented_length, draw_effects, item_key
from xlsr.data.manifest import Utterance
from xlsr.data.sampling import LanguageSampler
from xlsr.errors import AudioError, XlsrError

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


def pack_batches(lengths: np.ndarray, order: np.ndarray, max_tokens: int, *, crop_to_shortest: bool,
                 max_sample_size: int | None = None) -> list[list[int]]:
    """Greedy length-sorted packing of `order` (indices into `lengths`) under `max_tokens` per batch.

    With `crop_to_shortest` a batch costs B × min(shortest, max_sample_size) (pretraining); otherwise
    B × longest (padding). Ties keep the order of `order`, so shuffle it first for random ties.
    """
    cost_len = np.minimum(lengths, max_sample_size) if max_sample_size else lengths
    # Pretraining packs longest-first (each new one is the crop), fine-tuning shortest-first (each new
    # one is the padded length): either way the newest utterance sets the batch's per-row cost.
    key = -cost_len[order] if crop_to_shortest else cost_len[order]
    ranked = order[np.argsort(key, kind="stable")]
    batches: list[list[int]] = []
    current: list[int] = []
    for i in ranked.tolist():
        if current and (len(current) + 1) * cost_len[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class _BatchPlan:
    indices: tuple[int, ...]
    seed: tuple[int, ...]  # for the random crop offsets
    effects: tuple[EffectDraw | None, ...] | None = None  # per index, with augmentation


BABBLE_TALKERS = 8  # utterances a worker loads once as talkers for babble noise
_AUGMENT_TAG = 0xA6  # in the keys of the per-item effect draws


def draw_epoch_effects(augment: AugmentSpec | None, seed: int, epoch: int, count: int) -> list[EffectDraw | None]:
    """The effects of items 0..count-1 of an epoch: keyed on (seed, epoch, item), rooms from the bank of `seed`."""
    if augment is None or not augment.enabled:
        return [None] * count
    return [draw_effects(augment, item_key(seed, epoch, item, _AUGMENT_TAG), room_seed=seed) for item in range(count)]


@dataclass
class _Loaded:
    batch: PretrainBatch | FinetuneBatch | None
    bad: list[str] = field(default_factory=list)
    short: int = 0


class _BatchDataset(Dataset):
    """Loads and collates one planned batch (keyed by its plan) in a worker process."""

    def __init__(self, utts: Sequence[Utterance], *, pretrain: bool, normalize: bool,
                 min_sample_size: int = 0, max_sample_size: int | None = None,
                 labels: list[list[int]] | None = None, babble: Sequence[int] = ()) -> None:
        self.utts, self.pretrain, self.normalize = list(utts), pretrain, normalize
        self.min_sample_size, self.max_sample_size, self.labels = min_sample_size, max_sample_size, labels
        self.babble_indices = tuple(babble)  # talkers for babble noise, loaded on first use in each worker
        self._babble: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, plan: _BatchPlan) -> _Loaded:
        loaded, bad, short = [], [], 0
        for k, i in enumerate(plan.indices):
            draw = plan.effects[k] if plan.effects else None
            try:
                x = load_audio(self.utts[i].audio, normalize=self.normalize and draw is None)
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
                        self._babble.append(load_audio(self.utts[i].audio))
                    except AudioError:
                        pass  # counted where the utterance itself is loaded
            if not self._babble:
                draw = replace(draw, noise_kind="pink")  # no readable talker: noise of another colour
        x = apply_effects(x, draw, babble=self._babble)
        return normalize_waveform(x) if self.normalize else x

    def _crop(self, loaded: list[tuple[int, np.ndarray]], rng: np.random.Generator) -> PretrainBatch:
        return crop_batch([x for _, x in loaded], [self.utts[i].lang for i, _ in loaded], rng, self.max_sample_size)

    def _pad(self, loaded: list[tuple[int, np.ndarray]], rng: np.random.Generator) -> FinetuneBatch:
        return pad_batch([x for _, x in loaded], [self.labels[i] for i, _ in loaded],
                         [self.utts[i].lang for i, _ in loaded], [self.utts[i].id for i, _ in loaded])


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


def pad_batch(waves: Sequence[np.ndarray], label_rows: Sequence[list[int]], langs: list[str],
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
        self.plans: list[_BatchPlan] = []

    def __iter__(self) -> Iterator[_BatchPlan]:
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
        self._plans: list[_BatchPlan] | None = None
        self.sampler: LanguageSampler | None = None  # pretraining: the language table for logs
        self._sampler = _PlanSampler()
        # a private generator: DataLoader draws a worker base seed per epoch, and drawing it from the global
        # RNG would shift dropout and masks after a mid-epoch resume
        kwargs = {"num_workers": num_workers, "batch_size": None, "sampler": self._sampler,
                  "collate_fn": _unbatched, "generator": torch.Generator().manual_seed(0)}
        if num_workers > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor)
        self._loader = DataLoader(dataset, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Go to epoch `epoch`. The current epoch keeps its position (so a resumed run may call this)
        unless it has been fully consumed, in which case it starts over."""
        if epoch != self.epoch or self.position >= len(self):
            self.epoch, self.position, self.epoch_bad_files = int(epoch), 0, 0
            self._plans = None

    def plans(self) -> list[_BatchPlan]:
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


def _shard(batches: list, rank: int, world_size: int, equal: bool) -> list:
    if equal:  # every rank must run the same number of steps under DDP
        batches = batches[:len(batches) - len(batches) % world_size] if world_size > 1 else batches
    return batches[rank::world_size]


def _check_rank(rank: int, world_size: int) -> None:
    if not 0 <= rank < world_size:
        raise XlsrError(f"rank {rank} is outside world_size {world_size}")


def pretrain_loader(utts: Sequence[Utterance], *, max_tokens: int, min_sample_size: int = 32000,
                    max_sample_size: int = 320000, alpha: float = 0.5, seed: int = 0, rank: int = 0,
                    world_size: int = 1, num_workers: int = 0, normalize: bool = False,
                    max_bad_share: float = 0.05, epoch_size: int | None = None,
                    prefetch_factor: int = 2, augment: AugmentSpec | None = None) -> BatchLoader:
    """Pretraining batches: α-resampled languages, crops to the batch's shortest (≤ max_sample_size).

    Utterances shorter than `min_sample_size` samples are skipped. `max_tokens` bounds B × crop length.
    `augment`: acoustic effects applied on the fly (module docstring); an upsampled utterance drawn twice in
    an epoch gets its own effects each time.
    """
    _check_rank(rank, world_size)
    augment = augment if augment is not None and augment.enabled else None
    if max_sample_size and max_sample_size > max_tokens:
        raise XlsrError(f"max_tokens ({max_tokens}) is smaller than max_sample_size ({max_sample_size})")
    kept = [u for u in utts if u.num_samples >= min_sample_size]
    if len(kept) < len(utts):
        log.info("skipping %d of %d utterances shorter than min_sample_size=%d",
                 len(utts) - len(kept), len(utts), min_sample_size)
    if not kept:
        raise XlsrError(f"no utterance is at least min_sample_size={min_sample_size} samples long")
    sampler = LanguageSampler(kept, alpha=alpha, seed=seed, epoch_size=epoch_size)
    lengths = np.array([u.num_samples for u in kept])

    def plan_epoch(epoch: int) -> list[_BatchPlan]:
        order = sampler.epoch_indices(epoch)  # already shuffled: random ties
        # packed by slot (position in `order`): an utterance drawn twice has two lengths under speed perturbation
        draws = draw_epoch_effects(augment, seed, epoch, len(order))
        slot_lengths = np.array([augmented_length(int(lengths[i]), d) for i, d in zip(order, draws)])
        slots = pack_batches(slot_lengths, np.arange(len(order)), max_tokens, crop_to_shortest=True,
                             max_sample_size=max_sample_size)
        perm = np.random.default_rng([seed, epoch, 1]).permutation(len(slots))
        plans = [_BatchPlan(tuple(int(order[j]) for j in slots[b]), (seed, epoch, int(b)),
                            tuple(draws[j] for j in slots[b]) if augment is not None else None) for b in perm]
        return _shard(plans, rank, world_size, equal=True)

    dataset = _BatchDataset(kept, pretrain=True, normalize=normalize, min_sample_size=min_sample_size,
                            max_sample_size=max_sample_size, babble=_babble_talkers(len(kept), seed, augment))
    loader = BatchLoader(dataset, plan_epoch, num_workers=num_workers, prefetch_factor=prefetch_factor,
                         max_bad_share=max_bad_share)
    loader.sampler = sampler  # the language table (hours, weights) for logs
    return loader


def _babble_talkers(count: int, seed: int, augment: AugmentSpec | None) -> tuple[int, ...]:
    """Indices of the utterances that serve as babble talkers (none without noise augmentation)."""
    if augment is None or augment.noise is None:
        return ()
    pick = np.random.default_rng([seed, 0xBAB]).choice(count, size=min(BABBLE_TALKERS, count), replace=False)
    return tuple(int(i) for i in sorted(pick))


_LABEL_FIELD = {"phones": "phones", "text": "text", "chars": "text"}


def encode_labels(utts: Sequence[Utterance], vocab, label_field: str, oov: str = "error") -> list[list[int]]:
    """Label ids for every utterance via `vocab.encode`; XlsrError for a missing label or, with
    oov="error", symbols outside the vocabulary (needs `vocab.oov_report`)."""
    if label_field not in _LABEL_FIELD:
        raise XlsrError(f"label field must be one of {', '.join(_LABEL_FIELD)}, got {label_field!r}")
    attr = _LABEL_FIELD[label_field]
    labels = []
    for u in utts:
        label = getattr(u, attr)
        if not label:
            raise XlsrError(f"utterance {u.id} ({u.audio}): no {attr!r} label")
        labels.append(label)
    if oov != "unk" and hasattr(vocab, "oov_report"):
        report = vocab.oov_report(labels)
        if report:
            shown = ", ".join(f"{s!r}×{n}" for s, n in sorted(report.items(), key=lambda kv: -kv[1])[:8])
            message = f"{attr} labels contain symbols outside the vocabulary: {shown}"
            if oov == "error":
                raise XlsrError(message)
            log.warning("%s (mapped to <unk>)", message)
    return [list(vocab.encode(label)) for label in labels]


def finetune_loader(utts: Sequence[Utterance], vocab, *, max_tokens: int, shuffle: bool = True, seed: int = 0,
                    normalize: bool = False, label_field: str = "phones", rank: int = 0, world_size: int = 1,
                    num_workers: int = 0, max_bad_share: float = 0.05, max_sample_size: int | None = None,
                    oov: str = "error", prefetch_factor: int = 2, augment: AugmentSpec | None = None) -> BatchLoader:
    """Fine-tuning batches: zero-padded waveforms with lengths, label ids from `vocab.encode`.

    `label_field`: "phones" or "text"/"chars". Utterances longer than `max_tokens` (or `max_sample_size`)
    are skipped with a warning. `oov`: "error" | "warn" | "unk" for label symbols outside the vocabulary.
    With shuffle=False (evaluation) batches are in length order and no batch is dropped under DDP.
    `augment`: acoustic effects applied on the fly (module docstring), for training data.
    """
    _check_rank(rank, world_size)
    augment = augment if augment is not None and augment.enabled else None
    limit = min(max_tokens, max_sample_size or max_tokens)
    kept = [u for u in utts if u.num_samples <= limit]
    if len(kept) < len(utts):
        log.warning("skipping %d of %d utterances longer than %d samples", len(utts) - len(kept), len(utts), limit)
    if not kept:
        raise XlsrError(f"no utterance fits in max_tokens={max_tokens}")
    labels = encode_labels(kept, vocab, label_field, oov)
    lengths = np.array([u.num_samples for u in kept])

    def plan_epoch(epoch: int) -> list[_BatchPlan]:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(kept)) if shuffle else np.arange(len(kept))
        draws = draw_epoch_effects(augment, seed, epoch, len(kept))  # per utterance: each comes once an epoch
        epoch_lengths = np.array([augmented_length(int(n), d) for n, d in zip(lengths, draws)])
        batches = pack_batches(epoch_lengths, order, max_tokens, crop_to_shortest=False)
        if shuffle:
            batches = [batches[b] for b in rng.permutation(len(batches))]
        plans = [_BatchPlan(tuple(b), (seed, epoch, n), tuple(draws[i] for i in b) if augment is not None else None)
                 for n, b in enumerate(batches)]
        return _shard(plans, rank, world_size, equal=shuffle)

    dataset = _BatchDataset(kept, pretrain=False, normalize=normalize, labels=labels,
                            babble=_babble_talkers(len(kept), seed, augment))
    return BatchLoader(dataset, plan_epoch, num_workers=num_workers, prefetch_factor=prefetch_factor,
                       max_bad_share=max_bad_share)
