"""Planning an epoch's batches: length-sorted packing under a token budget, per-item effect draws, rank shards.

Pure functions of (lengths, seed, epoch, rank): every rank computes the same plan, and a resumed run the same
one, whatever the number of workers. The loaders in data/batching.py turn plans into loaded batches.
An epoch's effects are drawn as one table (augment.draw_effect_table); a plan keeps its items' rows
(`PlannedEffects`), and an item's EffectDraw is built where its audio is loaded.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from xlsr.data.augment import AugmentSpec, EffectDraw, draw_effect_table, effect_draw
from xlsr.errors import XlsrError

BABBLE_TALKERS = 8  # utterances a worker loads once as talkers for babble noise
_AUGMENT_TAG = 0xA6  # in the keys of an epoch's effect draws


@dataclass(frozen=True, eq=False)
class PlannedEffects(Sequence):
    """The effects of a batch's items: their rows of the epoch's table; item k reads as its EffectDraw (or None),
    built on access (in the worker that loads the audio)."""

    spec: AugmentSpec
    key: tuple[int, ...]  # (seed, epoch, tag): with an item's number, the key of its noise samples
    room_seed: int
    rows: np.ndarray  # augment.EFFECT_ROW, one per item

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> EffectDraw | None:
        return effect_draw(self.spec, self.rows[k], self.key, self.room_seed)

    def __iter__(self) -> Iterator[EffectDraw | None]:
        return (self[k] for k in range(len(self)))

    def take(self, keep: Sequence[int]) -> PlannedEffects:
        """The effects of items `keep` (positions in this batch)."""
        return replace(self, rows=self.rows[np.asarray(keep, dtype=np.int64)])


@dataclass(frozen=True)
class BatchPlan:
    """One batch to load: utterance indices, the seed of its random crop offsets, the effects per index."""

    indices: tuple[int, ...]
    seed: tuple[int, ...]  # for the random crop offsets
    effects: PlannedEffects | None = None  # per index, with augmentation


def without_indices(plan: BatchPlan, drop: Container[int]) -> BatchPlan:
    """`plan` without the utterances in `drop` (and their effects); `plan` itself when it holds none of them."""
    keep = [k for k, i in enumerate(plan.indices) if i not in drop]
    if len(keep) == len(plan.indices):
        return plan
    effects = None if plan.effects is None else plan.effects.take(keep)
    return replace(plan, indices=tuple(plan.indices[k] for k in keep), effects=effects)


def pack_batches(lengths: np.ndarray, order: np.ndarray, max_tokens: int, *, crop_to_shortest: bool,
                 max_sample_size: int | None = None, max_utterances: int | None = None) -> list[list[int]]:
    """Greedy length-sorted packing of `order` (indices into `lengths`) under `max_tokens` per batch.

    With `crop_to_shortest` a batch costs B × min(shortest, max_sample_size) (pretraining); otherwise
    B × longest (padding). `max_utterances` (None: no cap) also ends a batch at that many utterances, as
    fairseq's dataset.batch_size does on top of max_tokens. Ties keep the order of `order`, so shuffle it first
    for random ties.
    """
    ranked, bounds = pack_spans(lengths, order, max_tokens, crop_to_shortest=crop_to_shortest,
                                max_sample_size=max_sample_size, max_utterances=max_utterances)
    return [ranked[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]


def pack_spans(lengths: np.ndarray, order: np.ndarray, max_tokens: int, *, crop_to_shortest: bool,
               max_sample_size: int | None = None, max_utterances: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`pack_batches` as arrays: `order` ranked by cost, and bounds so that batch b is ranked[bounds[b]:bounds[b+1]]."""
    cost_len = np.minimum(lengths, max_sample_size) if max_sample_size else np.asarray(lengths)
    # Pretraining packs longest-first (each new one is the crop), fine-tuning shortest-first (each new
    # one is the padded length): either way the newest utterance sets the batch's per-row cost.
    key = -cost_len[order] if crop_to_shortest else cost_len[order]
    ranked = np.asarray(order)[np.argsort(key, kind="stable")]
    cost = cost_len[ranked].astype(np.int64)
    bounds, start, window = [0], 0, 64
    while start < len(cost):
        end = _batch_end(cost, start, window, max_tokens)
        if max_utterances:
            end = min(end, start + max_utterances)
        window = 2 * (end - start) + 2  # the next batch is about as long: one look ahead is mostly enough
        bounds.append(end)
        start = end
    return ranked, np.array(bounds, dtype=np.int64)


def _batch_end(cost: np.ndarray, start: int, window: int, max_tokens: int) -> int:
    """Where the batch from `start` ends: the first j > start whose (j - start + 1) × cost[j] > max_tokens."""
    while True:
        stop = min(len(cost), start + window)
        rows = np.arange(2, stop - start + 1)  # the batch's size if cost[start + 1 ...] joined it
        over = rows * cost[start + 1:stop] > max_tokens
        if over.any():
            return start + 1 + int(np.argmax(over))
        if stop == len(cost):
            return stop
        window *= 2


def draw_epoch_effects(augment: AugmentSpec | None, seed: int, epoch: int, count: int) -> np.ndarray | None:
    """The effects of items 0..count-1 of an epoch as a table (augment.draw_effect_table) drawn from (seed, epoch);
    None without augmentation."""
    if augment is None or not augment.enabled:
        return None
    return draw_effect_table(augment, effects_key(seed, epoch), count)


def effects_key(seed: int, epoch: int) -> tuple[int, ...]:
    """The key of epoch `epoch`'s effect draws (`PlannedEffects.key`: one tuple for all the epoch's batches)."""
    return (int(seed), int(epoch), _AUGMENT_TAG)


def babble_talkers(count: int, seed: int, augment: AugmentSpec | None) -> tuple[int, ...]:
    """Indices of the utterances that serve as babble talkers (none without noise augmentation)."""
    if augment is None or augment.noise is None:
        return ()
    pick = np.random.default_rng([seed, 0xBAB]).choice(count, size=min(BABBLE_TALKERS, count), replace=False)
    return tuple(int(i) for i in sorted(pick))


def shard(plans: list, rank: int, world_size: int, equal: bool) -> list:
    """Rank `rank`'s plans: every world_size-th from `rank`; with `equal`, the same count on every rank."""
    if equal:  # every rank must run the same number of steps under DDP
        plans = plans[:len(plans) - len(plans) % world_size] if world_size > 1 else plans
    return plans[rank::world_size]


def check_rank(rank: int, world_size: int) -> None:
    """XlsrError unless 0 <= rank < world_size."""
    if not 0 <= rank < world_size:
        raise XlsrError(f"rank {rank} is outside world_size {world_size}")
