"""The loader over streamed shards (data/shard_stream.py): DataLoader workers, epochs, bad files, resume.

`ShardLoader` offers what the manifest loader (`batching.BatchLoader`) offers the tasks: `epoch`, `len()` (this
rank's batches in an epoch), `set_epoch`, iteration, `state_dict`/`load_state_dict`, the bad-file counters. One
DataLoader iterator lives across epochs, since the streams have no end; an epoch ends after `epoch_batches`
batches. `shard_pretrain_loader`, `shard_finetune_loader` and `shard_valid_loaders` build it from a shard folder.

A decoder that crashes a worker, or hangs in one past `decode_timeout`, costs its utterance, as in the manifest loader
(data/worker_crash.py): the worker's slot names it, it is charged as a bad file, the workers start anew with each
consumer at the state of the last batch it handed over (the shards open then are read again, as after a resume), and
it is not decoded again in the run (`crashed`, in the loader state). Without workers a training task's
`DecodingRecord` (data/decoding_record.py) names it to the next run of the same command.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xlsr.data.batching import FinetuneBatch, PretrainBatch, check_crop_fits
from xlsr.data.decoder_pool import checked_timeout
from xlsr.data.decoding_record import DecodingRecord
from xlsr.data.shard_index import ShardIndex, check_shards, read_index
from xlsr.data.shard_reader import Bad
from xlsr.data.shard_stream import (
    ConsumerStream,
    DecodeGuard,
    Labeler,
    Produced,
    StreamSpec,
    moved_states,
)
from xlsr.data.worker_crash import (
    KeyReadingSlots,
    crash_line,
    dead_workers,
    defer_worker_deaths,
    hang_line,
    is_timeout,
    kill_workers,
    waiting_for_batch,
    worker_deaths,
)
from xlsr.data.worker_signals import close_at_exit, ignore_stop_signals
from xlsr.errors import XlsrError

log = logging.getLogger(__name__)


class _StreamDataset(IterableDataset):
    """Each DataLoader worker runs the ConsumerStream of its consumer number."""

    def __init__(self, spec: StreamSpec, rank: int, world_size: int, num_workers: int) -> None:
        self.spec, self.rank, self.world_size = spec, rank, world_size
        self.workers = max(num_workers, 1)
        self.resume: dict[int, dict] = {}
        # utterance key -> its line: a decoder crashed or hung on it in this run (workers started after learn it)
        self.crashed: dict[str, str] = {}
        self.reading: KeyReadingSlots | None = None  # with workers: what each is decoding (worker_crash.py)
        self.record: DecodingRecord | None = None  # without: what this process decodes (set by a training task)

    def __iter__(self) -> Iterator[Produced]:
        info = get_worker_info()
        consumer = self.rank * self.workers + (info.id if info is not None else 0)
        yield from ConsumerStream(self.spec, consumer, self.world_size * self.workers,
                                  self.resume.get(consumer), _Guard(self)).batches()
        if self.reading is not None:  # its share of a one pass read: DataLoader lets this process exit, no death
            self.reading.finish()


def _in_slot(held: str | None) -> tuple[str | None, str | None]:
    """(key, name) of the utterance a worker's slot holds (`_Guard.decoding`), or (None, None)."""
    if held is None:
        return None, None
    key, _, name = held.partition("\0")  # no path or tar member holds a NUL
    return key, name or key


class _Guard(DecodeGuard):
    """The loader's answers to a consumer: the utterances a decoder crashed or hung on (in this run, or an earlier
    run's process), and who keeps the name of the one being decoded (a worker's slot, or this process's record)."""

    def __init__(self, dataset: _StreamDataset) -> None:
        self.dataset = dataset

    def known_bad(self, key: str) -> str | None:
        if key in self.dataset.crashed:
            return self.dataset.crashed[key]
        return self.dataset.record.crashed.get(key) if self.dataset.record is not None else None

    def decoding(self, key: str, name: str) -> contextlib.AbstractContextManager:
        if self.dataset.reading is not None:  # in a worker: the slot holds both (`_in_slot` parts them)
            return self.dataset.reading.reading(f"{key}\0{name}")
        if self.dataset.record is not None:  # in the training process: a crash here ends it, and the next run knows
            return self.dataset.record.decoding(key)
        return contextlib.nullcontext()


def _unbatched(produced: Produced) -> Produced:
    return produced


class ShardLoader:
    """Batches of one rank from streamed shards; `epoch_batches=None` reads one pass and stops (validation)."""

    def __init__(self, spec: StreamSpec, *, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 epoch_batches: int | None = None, max_bad_share: float = 0.05, prefetch_factor: int = 2,
                 decode_timeout: float | None = None) -> None:
        if not 0 <= rank < world_size:
            raise XlsrError(f"rank {rank} is outside world_size {world_size}")
        checked_timeout(decode_timeout, "decode_timeout")
        self.spec, self.epoch_batches, self.max_bad_share = spec, epoch_batches, max_bad_share
        self.decode_timeout = decode_timeout if num_workers > 0 else None  # a worker past it on one utterance is stopped
        self.dataset = _StreamDataset(spec, rank, world_size, num_workers)
        self.hours = spec.hours()
        # what the bad-file share is a share of: this rank's part of an epoch's (or a pass's) utterances
        self.epoch_utterances = max(1, sum(s.utterances for s in spec.shards) // world_size)
        self.epoch, self.position = 0, 0
        self.bad_files, self.epoch_bad_files = 0, 0
        # the problems (a damaged shard, an undecodable utterance) charged in this epoch: each once, however often
        # α upsampling re-reads its shard
        self.charged: set[str] = set()
        self.told: set[str] = set()  # the warnings given once per run (shard_stream.Produced.once)
        self.states: dict[int, dict] = {}  # consumer -> its state after the last batch handed over
        self._kwargs = {"batch_size": None, "num_workers": num_workers, "collate_fn": _unbatched,
                        "generator": torch.Generator().manual_seed(0)}  # not the global RNG (see batching.py)
        if num_workers > 0:
            self._kwargs.update(prefetch_factor=prefetch_factor, worker_init_fn=ignore_stop_signals,
                                timeout=self.decode_timeout or 0)  # a wait that long for a batch: is a worker hung?
            self.dataset.reading = KeyReadingSlots(num_workers)
            close_at_exit(self)
        self._it: Iterator[Produced] | None = None
        self._one_pass: Iterator[Produced] | None = None  # the DataLoader iterator of a one-pass iteration under way

    def close(self) -> None:
        """Stop the worker processes now (they ignore SIGTERM: worker_signals.py); a later iteration resumes from the
        consumers' states, as after a resume (a one-pass loader starts its pass over, as every iteration does)."""
        if self._it is not None:  # the endless streams' DataLoader iterator: its batches not yet handed over are
            # dropped with it, and the next iterator's streams start where the last batch handed over left each consumer
            self._drop(one_pass=False)
        if self._one_pass is not None:  # still referenced by the suspended generator: its workers are stopped here
            self._drop(one_pass=True)

    def _drop(self, one_pass: bool, keep_slots: bool = False) -> None:
        """Stop the workers of the current DataLoader iterator (killed: one stuck in a decoder ignores SIGTERM, and
        Python's exit would wait on it) and forget it: the next starts each consumer at its last handed-over state.
        Their reading slots are cleared unless `keep_slots` (the caller reads them, then clears)."""
        it = self._one_pass if one_pass else self._it
        kill_workers(it)
        shutdown = getattr(it, "_shutdown_workers", None)  # none without worker processes
        if shutdown is not None:
            shutdown()
        if self.dataset.reading is not None and not keep_slots:
            self.dataset.reading.clear()
        self.dataset.resume = dict(self.states)
        if one_pass:
            self._one_pass = None
        else:
            self._it = None

    def __len__(self) -> int:
        if self.epoch_batches is None:
            raise TypeError("a one-pass shard loader has no fixed length")
        return self.epoch_batches

    def set_epoch(self, epoch: int) -> None:
        """Go to epoch `epoch`; the current one keeps its position unless it is complete (as BatchLoader)."""
        if epoch != self.epoch or (self.epoch_batches is not None and self.position >= self.epoch_batches):
            self.epoch, self.position, self.epoch_bad_files = int(epoch), 0, 0
            self.charged = set()

    def __iter__(self) -> Iterator[PretrainBatch | FinetuneBatch]:
        if self.dataset.record is not None:  # what ended another rank's process since: skipped from this epoch on
            self.dataset.record.refresh()
        if self.epoch_batches is None:  # one pass, from the start every time
            if self._one_pass is not None:  # a pass left part-way (validation stopped at a count)
                self._drop(one_pass=True)
            self.epoch_bad_files, self.charged, self.states = 0, set(), {}
            self.dataset.resume = {}
            while (produced := self._next(one_pass=True)) is not None:
                if self._account(produced):
                    yield produced.batch
            self._one_pass = None
            return
        while self.position < self.epoch_batches:
            produced = self._next(one_pass=False)  # the streams are endless: there is always a next
            if produced is not None and self._account(produced):
                self.position += 1
                yield produced.batch

    def _next(self, one_pass: bool) -> Produced | None:
        """The next output of a consumer (None: the one pass is over). A worker killed by a decoder crash, or one on
        an utterance for longer than decode_timeout, costs that utterance: it is charged as bad, the workers are
        started anew, each consumer at the state of the last batch it handed over (as after a resume: the shards
        open then are read again), and none decodes the utterance again in this run (kept in the loader state)."""
        waits = 0  # decode_timeouts waited in a row, with no worker past it on one utterance
        while True:
            it = self._one_pass if one_pass else self._it
            if it is None:  # (the crashed list of the run folder's record was read again as the iteration began)
                if self.dataset.reading is not None:  # no mark of the workers before (`finish`) blames these
                    self.dataset.reading.clear()
                it = iter(DataLoader(self.dataset, **self._kwargs))
                if one_pass:
                    self._one_pass = it
                else:
                    self._it = it
                if self.dataset.reading is not None:
                    defer_worker_deaths()
            if dead_workers(it, slots=self.dataset.reading):  # one that died while the caller trained: before asking
                self._skip_crashed_utterances(one_pass)
                continue
            try:
                with waiting_for_batch(it):
                    return next(it)
            except StopIteration:
                return None
            except Exception as exc:  # PyTorch's RuntimeError, or DataLoader's timeout
                if is_timeout(exc):
                    if self._stop_hung_workers(one_pass):
                        continue
                    waits += 1
                    if waits == 3:  # said once per batch: a worker stuck outside decoding is waited on
                        log.warning("rank %d: no batch from the shard stream's workers for %.0f s, and none of them "
                                    "has been decoding one utterance for longer than decode_timeout=%g; waiting on "
                                    "(a slow file system, or a worker stuck outside audio decoding)",
                                    self.dataset.rank, waits * self.decode_timeout, self.decode_timeout)
                    continue
                if not dead_workers(it, wait=1.0, slots=self.dataset.reading):
                    raise
                self._skip_crashed_utterances(one_pass)

    def _stop_hung_workers(self, one_pass: bool) -> bool:
        """Charge the utterance of each worker decoding one for longer than decode_timeout, and start the workers
        anew; False, and nothing done, when none has."""
        hung = self.dataset.reading.overdue(self.decode_timeout) if self.dataset.reading is not None else []
        if not hung:
            return False
        self._drop(one_pass)
        lines = []
        for _, held, seconds in hung:
            key, name = _in_slot(held)
            lines.append((key, hang_line(name, seconds, self.decode_timeout)))
        self._charge_decoder(lines)
        return True

    def _skip_crashed_utterances(self, one_pass: bool) -> None:
        """After workers died: charge the utterance a decoder crash killed each on (two at once cost one restart),
        and start the workers anew. Any other death (SIGKILL, an exit, a crash outside decoding) stops the run."""
        it = self._one_pass if one_pass else self._it
        lines = []
        # _drop kills the others (SIGKILL: no crash)
        for code, held in worker_deaths(it, self.dataset.reading, lambda: self._drop(one_pass, keep_slots=True)):
            key, name = _in_slot(held)
            lines.append((key, crash_line(code, name, self.dataset.rank)))  # raises for a death no crash explains
        self._charge_decoder(lines)

    def _charge_decoder(self, lines: list[tuple[str, str]]) -> None:
        """Charge utterances a decoder crashed or hung on (key, line) and keep them from being decoded again."""
        for key, line in lines:
            self.dataset.crashed[key] = line
            self._charge(Bad(key, 1, line))
        self._check_share(lines[-1][1] if lines else "?")

    def _account(self, produced: Produced) -> bool:
        """Record a consumer's state and problems; raise on a fatal one or too many bad files. A batch to yield?
        A batch that stops the run leaves the loader as it was before it (its consumer's state not taken, its bad
        files not charged): a checkpoint saved at the error (the Trainer's) reads it again on resume."""
        if produced.fatal:
            raise XlsrError(produced.fatal)
        fresh = [bad for bad in produced.bad if self._charge(bad)]
        for note in produced.once:
            if note.key not in self.told:
                self.told.add(note.key)
                log.warning("%s", note.message)
        try:
            self._check_share(produced.bad[-1].message if produced.bad else "?")
        except XlsrError:
            for bad in fresh:
                self.charged.discard(bad.key)
                self.bad_files -= bad.count
                self.epoch_bad_files -= bad.count
            raise
        self.states[produced.consumer] = produced.state
        return produced.batch is not None

    def _check_share(self, last: str) -> None:
        if self.epoch_bad_files > self.max_bad_share * self.epoch_utterances:
            raise XlsrError(f"{self.epoch_bad_files} of about {self.epoch_utterances} utterances in epoch {self.epoch} "
                            f"are unreadable, more than max_bad_share={self.max_bad_share:g} (last: {last})")

    def _charge(self, bad: Bad) -> bool:
        """Report a problem and count its bad files, unless it was charged in this epoch already (False)."""
        if bad.key in self.charged:
            return False
        self.charged.add(bad.key)
        if bad.count:
            log.warning("skipping bad audio: %s", bad.message)
        else:
            log.warning("%s", bad.message)
        self.bad_files += bad.count
        self.epoch_bad_files += bad.count
        return True

    def state_dict(self) -> dict:
        """Epoch, batches yielded in it, bad-file counters, and each consumer's finished shards and random state."""
        return {"epoch": self.epoch, "position": self.position, "bad_files": self.bad_files,
                "epoch_bad_files": self.epoch_bad_files, "charged": sorted(self.charged),
                "consumers": dict(self.states), "layout": [self.dataset.world_size, self.dataset.workers],
                "crashed": sorted(self.dataset.crashed.items())}

    def load_state_dict(self, state: dict) -> None:
        """Resume: each consumer restarts at its first unfinished shard (module docstring of shard_stream)."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.bad_files, self.epoch_bad_files = int(state["bad_files"]), int(state["epoch_bad_files"])
        self.charged = set(state.get("charged", []))
        self.dataset.crashed = {str(key): str(line) for key, line in state.get("crashed", ())}
        states = {int(c): s for c, s in state.get("consumers", {}).items()}
        layout = [self.dataset.world_size, self.dataset.workers]
        if list(state.get("layout", layout)) != layout and states:
            old = int(state["layout"][0]) * int(state["layout"][1])
            log.warning("shard streams: %s ranks x workers before, %s now; every stream restarts after the shards "
                        "all earlier ones had finished (resume not exact)", state["layout"], layout)
            states = moved_states(states, old, layout[0] * layout[1], self.spec)
        first = self.dataset.rank * self.dataset.workers
        states = {c: s for c, s in states.items() if first <= c < first + self.dataset.workers}  # this rank's
        self.states = dict(states)
        self.dataset.resume = states
        if self._it is not None:  # its streams run from the old states
            self._drop(one_pass=False)


def every_consumer(states: list[dict]) -> dict[int, dict]:
    """The consumer states in the loader states of all ranks of a checkpoint (one per rank), each taken from the
    rank that ran it: what a resume with another layout converts, since every new consumer must restart after
    what every old one finished (`moved_states`), not only the old consumers of one rank."""
    merged = {}
    for rank, state in enumerate(states):
        workers = int(state.get("layout", [len(states), 1])[1])
        merged.update({int(c): s for c, s in state.get("consumers", {}).items() if int(c) // workers == rank})
    return merged


def _open_split(root: str | Path, split: str, langs: list[str] | None) -> tuple[ShardIndex, list]:
    """The index of shard folder `root`, with its root made absolute, and the shards of `split`: a stream names an
    utterance by its shard's path (the loader state's `crashed` and `charged`, the run folder's decoding record), the
    same whether a command spells the folder relative or absolute."""
    index = read_index(root)
    shards = index.of_split(split, langs)
    check_shards(index, split)
    return replace(index, root=Path(os.path.abspath(index.root))), shards


def _epoch_batches(shards: list, max_tokens: int, cap: int | None, world_size: int, epoch_size: int | None,
                   max_utterances: int | None = None) -> int:
    """Batches per rank in an epoch: the split's audio (each utterance at most `cap`) at max_tokens per batch, or
    its utterances at `max_utterances` per batch where that needs more batches."""
    utts = sum(s.utterances for s in shards)
    mean = sum(s.num_samples for s in shards) / max(utts, 1)
    per_utt = min(mean, cap) if cap else mean
    total = (epoch_size or utts) * per_utt / max_tokens
    if max_utterances:
        total = max(total, (epoch_size or utts) / max_utterances)
    return max(1, math.ceil(total / world_size))


def _training_loader(root: str | Path, split: str, langs: list[str] | None, *, rank: int, world_size: int,
                     num_workers: int, max_bad_share: float, epoch_size: int | None, decode_timeout: float | None,
                     **spec_fields) -> ShardLoader:
    index, shards = _open_split(root, split, langs)
    spec = StreamSpec(index.root, tuple(shards), **spec_fields)
    cap = spec.max_sample_size if spec.pretrain else None  # pretraining crops; fine-tuning pads whole utterances
    epoch_batches = _epoch_batches(shards, spec.max_tokens, cap, world_size, epoch_size, spec.max_utterances)
    return ShardLoader(spec, rank=rank, world_size=world_size, num_workers=num_workers, max_bad_share=max_bad_share,
                       decode_timeout=decode_timeout, epoch_batches=epoch_batches)


def shard_pretrain_loader(root: str | Path, split: str = "train", *, langs: list[str] | None = None,
                          max_tokens: int, min_sample_size: int = 32000, max_sample_size: int = 320000,
                          alpha: float = 0.5, seed: int = 0, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                          normalize: bool = False, max_bad_share: float = 0.05, epoch_size: int | None = None,
                          shuffle_buffer: int = 1000, max_utterances: int | None = None,
                          decode_timeout: float | None = None) -> ShardLoader:
    """Pretraining batches streamed from SHARDS/<split> (module docstring of data/shard_stream.py); a worker on one
    utterance for longer than `decode_timeout` seconds is stopped and the utterance charged as bad (None: waited on)."""
    check_crop_fits(max_tokens, max_sample_size)
    return _training_loader(root, split, langs, rank=rank, world_size=world_size, num_workers=num_workers,
                            max_bad_share=max_bad_share, epoch_size=epoch_size, decode_timeout=decode_timeout,
                            max_tokens=max_tokens, alpha=alpha,
                            seed=seed, pretrain=True, min_sample_size=min_sample_size,
                            max_sample_size=max_sample_size, normalize=normalize, shuffle_buffer=shuffle_buffer,
                            max_utterances=max_utterances)


def shard_finetune_loader(root: str | Path, split: str, labeler: Labeler, *, max_tokens: int,
                          max_sample_size: int | None = None, alpha: float = 1.0, seed: int = 0, rank: int = 0,
                          world_size: int = 1, num_workers: int = 0, normalize: bool = False,
                          max_bad_share: float = 0.05, shuffle_buffer: int = 1000,
                          decode_timeout: float | None = None) -> ShardLoader:
    """Fine-tuning batches (padded, with `labeler`'s label ids) streamed from SHARDS/<split>; `decode_timeout` as for
    `shard_pretrain_loader`."""
    return _training_loader(root, split, None, rank=rank, world_size=world_size, num_workers=num_workers,
                            max_bad_share=max_bad_share, epoch_size=None, decode_timeout=decode_timeout,
                            max_tokens=max_tokens, alpha=alpha,
                            seed=seed, pretrain=False, max_sample_size=max_sample_size, normalize=normalize,
                            labeler=labeler, shuffle_buffer=shuffle_buffer)


def shard_valid_loaders(root: str | Path, split: str, langs: list[str] | None, *, max_bad_share: float = 0.05,
                        **spec_fields) -> dict[str, ShardLoader]:
    """One one-pass loader per language of SHARDS/<split>, in index order (the same batches every time), each
    stopping past `max_bad_share` unreadable utterances as the training loader does."""
    index, shards = _open_split(root, split, langs)
    spec = StreamSpec(index.root, tuple(shards), passes=1, **spec_fields)
    return {lang: ShardLoader(replace(spec, shards=tuple(s for s in shards if s.lang == lang)),
                              max_bad_share=max_bad_share)
            for lang in spec.langs()}
