"""Planning an epoch's batches: length-sorted packing under a token budget, per-item effect draws, rank shards.

Pure functions of (lengths, seed, epoch, rank): every rank computes the same plan, and a resumed run the same
one, whatever the number of workers. The loaders in data/batching.py turn plans into loaded batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlsr.data.augment import AugmentSpec, EffectDraw, draw_effects, item_key
from xlsr.errors import XlsrError

BABBLE_TALKERS = 8  # utterances a worker loads once as talkers for babble noise
_AUGMENT_TAG = 0xA6  # in the keys of the per-item effect draws


@dataclass(frozen=True)
class BatchPlan:
    """One batch to load: utterance indices, the seed of its random crop offsets, the effects per index."""

    indices: tuple[int, ...]
    seed: tuple[int, ...]  # for the random crop offsets
    effects: tuple[EffectDraw | None, ...] | None = None  # per index, with augmentation


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


def draw_epoch_effects(augment: AugmentSpec | None, seed: int, epoch: int, count: int) -> list[EffectDraw | None]:
    """The effects of items 0..count-1 of an epoch: keyed on (seed, epoch, item), rooms from the bank of `seed`."""
    if augment is None or not augment.enabled:
        return [None] * count
    return [draw_effects(augment, item_key(seed, epoch, item, _AUGMENT_TAG), room_seed=seed) for item in range(count)]


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
