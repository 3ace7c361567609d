"""Batches for pretraining (cropped to the shortest, no padding) and fine-tuning (padded, with labels).

Each epoch is planned up front and identically on every rank: utterances sorted by length, packed
into batches under `max_tokens` samples, batch order shuffled, then rank r takes batches r, r+W, ...
Loading runs in DataLoader workers; a bad file (unreadable, or decoded to a length other than its manifest
entry's: `checked_length`) is logged and skipped, and when more than `max_bad_share` of an epoch's distinct files
are bad the loader stops with an XlsrError (under DDP each rank counts its own part of the epoch, and says so; its
error ends every rank: train/elastic.py). A bad file is charged once per epoch however often α-resampling draws
it, and not read again in that epoch. The loader's `state_dict()` (epoch, batches already yielded, the epoch's bad
files) lets a run resume at the exact next batch. A file whose decoder crashes the worker reading it (a segfault in
C code no header check foresaw) is one more bad file: the worker's slot names it, new workers start, and the pass
goes on at the next batch not yet yielded without it (data/worker_crash.py); it is not decoded again in the run, nor
after a resume. So is a file a decoder hangs on, with `decode_timeout`: the worker that has been on it longer than
that is stopped when the loader has waited as long for a batch. Without workers (num_workers=0; pretraining's validation
loaders always) the decoder runs in the caller's process: its crash ends it, and a hang is waited on; a training task keeps
what that process decodes in the run folder (`record_decoding`, data/decoding_record.py), so that the same command
skips the file that ended the run before it.

Bad files are also watched per language, where an epoch holds several: a language that loses more than
`max_bad_share` of its files in the epoch is warned about once (the language mixture shifts while the epoch's share
may stay under the cap), and one whose files in the epoch are all bad stops the run naming the language and its
manifest (a path or a mount that is gone: the run would go on without a language it was asked for) when they are
enough to say so, at least 1 / max_bad_share of them (20 at 5%: fewer all bad can be a few damaged files that one
rank happened to draw); else, and with `max_bad_share` 1, the run goes on with a warning. An epoch whose every file is bad stops the run whatever
`max_bad_share` is: nothing is left to train on.

A run reads the index its manifests had when it started. When the bad files stop it and a manifest has changed
since (a re-import into the same folder swaps manifest and audio: the index's files are gone or hold other audio),
the message says so: a rerun reads the new manifest. A rerun resuming from a checkpoint of the old data warns
that the epoch goes on in the new data's order, and counts the epoch's bad files anew (the old ones' positions
name other utterances now).

With `augment` (an `xlsr.data.augment.AugmentSpec`) each item's effects are drawn while the epoch is planned,
from (seed, epoch, item) (one table for the epoch: batch_plan.draw_epoch_effects), and applied in the worker: the
same on resume and whatever the number of workers, and batches are packed with the lengths speed perturbation
gives. Babble noise draws its talkers from a few utterances of the same data, loaded once per worker. A drawn
speed is not applied (the utterance plays at speed 1; counted in a warning per epoch) where it would take an
utterance out of the lengths the loader admits: in pretraining below `min_sample_size`, in fine-tuning above the
batch limit (`length_limit`) or to fewer CNN frames than its label needs. Utterances that turn out shorter than
`min_sample_size` once decoded are skipped and counted in a warning at the end of the epoch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from xlsr.data.audio import checked_length, length_mismatch, load_audio, normalize_waveform
from xlsr.data.augment import AugmentSpec, EffectDraw, apply_effects, augmented_lengths
from xlsr.data.batch_plan import (
    BatchPlan,
    PlannedEffects,
    babble_talkers,
    check_rank,
    draw_epoch_effects,
    effects_key,
    pack_batches,
    pack_spans,
    shard,
    without_indices,
)
from xlsr.data.decoder_pool import checked_timeout
from xlsr.data.decoding_record import DecodingRecord
from xlsr.data.index_cache import changed_manifests, manifest_stamps
from xlsr.data.label_ids import LabelIds, encode_labels
from xlsr.data.manifest import Utterance
from xlsr.data.sampling import LanguageSampler
from xlsr.data.utterance_index import UtteranceIndex, as_index
from xlsr.data.worker_crash import (
    ReadingSlots,
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
from xlsr.errors import AudioError, XlsrError
from xlsr.rates import SAMPLE_RATE
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
    bad: list[tuple[int, str]] = field(default_factory=list)  # (utterance index, message)
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
        self.reading: ReadingSlots | None = None  # set by a loader with workers: what each one is decoding
        # set by a training task: what this process decodes itself, kept where a crash cannot erase it
        self.record: DecodingRecord | None = None
        # set by fine-tuning with a frozen-CNN feature cache (train/feature_cache.py): utterance id -> decoded length
        # of the utterances whose CNN output is cached; those are not decoded again, their rows are silence of that
        # length (only padding and frame counts read them). A live mapping: a worker sees it as it was at its start.
        self.cached_lengths: Mapping[str, int] | None = None
        # utterances whose decoding killed a worker (index -> message): bad without being read again; workers see
        # the set as it was when they started (the loader starts new ones after each crash)
        self.crashed: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, plan: BatchPlan) -> _Loaded:
        loaded, bad, short = [], [], 0
        failed: set[int] = set()  # an utterance drawn twice into this batch fails once
        for k, i in enumerate(plan.indices):
            if i in failed:
                continue
            draw = plan.effects[k] if plan.effects is not None else None
            cached = self._cached_length(i) if draw is None else None
            if cached is not None:
                loaded.append((i, np.zeros(cached, dtype=np.float32)))
                continue
            path = self.utts.audio(i)
            try:
                x = checked_length(self._load(i, path), int(self.utts.num_samples[i]), path, source=path)
            except AudioError as exc:
                failed.add(i)
                bad.append((i, str(exc)))
                continue
            if draw is not None:
                x = self._augment(x, draw)
            elif self.normalize:
                x = normalize_waveform(x)
            if self.pretrain and len(x) < max(self.min_sample_size, 1):
                short += 1  # the manifest said long enough; the decoded audio is not
                continue
            loaded.append((i, x))
        if not loaded:
            return _Loaded(None, bad, short)
        collate = self._crop if self.pretrain else self._pad
        return _Loaded(collate(loaded, np.random.default_rng(plan.seed)), bad, short)

    def _cached_length(self, i: int) -> int | None:
        """Utterance `i`'s decoded length when its CNN output is cached (fine-tuning), else None: also for a file
        known bad since (it is charged as any bad file), and for a length this manifest line could not have decoded
        to (a cache of other data under the same id: decoded, and the cache recomputes its entry)."""
        if self.cached_lengths is None or self.pretrain:
            return None
        n = self.cached_lengths.get(self.utts.utterance_id(i))
        if n is None or self._known_bad(i, self.utts.audio(i)) is not None:
            return None
        listed = int(self.utts.num_samples[i])
        return None if n > listed or length_mismatch(n, listed, "") is not None else n

    def _known_bad(self, i: int, path: str) -> str | None:
        """Why utterance `i` is bad without decoding it: its decoding killed a worker, or an earlier run's process."""
        if i in self.crashed:
            return self.crashed[i]
        if self.record is not None:
            return self.record.crashed.get(path)
        return None

    def _load(self, i: int, path: str) -> np.ndarray:
        """Utterance `i`'s audio, decoded with this worker's slot naming it (worker_crash.py)."""
        known = self._known_bad(i, path)
        if known is not None:
            raise AudioError(known)
        if self.reading is not None:  # in a worker
            with self.reading.reading(i):
                return load_audio(path)
        if self.record is not None:  # in the training process: a crash here ends it, and the next run knows why
            with self.record.decoding(path):
                return load_audio(path)
        return load_audio(path)

    def _augment(self, x: np.ndarray, draw: EffectDraw) -> np.ndarray:
        """The drawn effects on raw audio, then the per-utterance normalization if the model wants it."""
        if draw.noise_kind == "babble":
            if self._babble is None:
                self._babble = []
                for i in self.babble_indices:
                    try:
                        self._babble.append(self._load(i, self.utts.audio(i)))
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
    """Yields the remaining batch plans of the current epoch; swapped by the loader before each pass.

    A plan leaves without the utterances already found bad in this epoch (`known_bad`, the loader's set, which grows
    during the pass): the DataLoader takes plans from here only as it hands them to workers, so an upsampled bad
    file is not read again once it is known. The batch is the same either way: it never holds a bad file's audio.
    """

    def __init__(self) -> None:
        self.plans: list[BatchPlan] = []
        self.known_bad: set[int] = set()

    def __iter__(self) -> Iterator[BatchPlan]:
        plans, known_bad = list(self.plans), self.known_bad
        return (without_indices(plan, known_bad) for plan in plans)

    def __len__(self) -> int:
        return len(self.plans)


def _unbatched(loaded: _Loaded) -> _Loaded:
    return loaded


class BatchLoader:
    """An epoch-aware, resumable loader over planned batches (see the module docstring)."""

    def __init__(self, dataset: _BatchDataset, plan_epoch, *, num_workers: int = 0, prefetch_factor: int = 2,
                 max_bad_share: float = 0.05, rank: int = 0, world_size: int = 1,
                 decode_timeout: float | None = None) -> None:
        checked_timeout(decode_timeout, "decode_timeout")
        self.dataset, self._plan_epoch = dataset, plan_epoch
        self.max_bad_share = max_bad_share
        self.decode_timeout = decode_timeout if num_workers > 0 else None  # a worker past it on a file is stopped
        self.rank, self.world_size = rank, world_size  # whose share of each epoch `plan_epoch` gives
        self.epoch, self.position = 0, 0
        self.bad_files = 0  # over the whole run (each file once per epoch)
        self.epoch_bad_files = 0
        # this epoch's bad utterances: charged once however often α-resampling draws them (only bad ones: small)
        self.bad_indices: set[int] = set()
        self.short_files, self.epoch_short_files = 0, 0  # the run's, the epoch's
        self._last_bad = "?"  # the message of the last bad file, for an error that comes after the batch
        self._plans: list[BatchPlan] | None = None
        self._distinct: int | None = None
        self._drawn = np.zeros(0, np.int64)  # this epoch's distinct files (with _distinct)
        self._distinct_by_lang: np.ndarray | None = None  # this epoch's distinct files per language code
        self._bad_by_lang: np.ndarray | None = None  # this epoch's bad files per language code
        self.sampler: LanguageSampler | None = None  # pretraining: the language table for logs
        self._limit = 0.0  # this pass's max_bad_share in files, and whether its languages are watched (__iter__)
        self._by_language = False
        self._sampler = _PlanSampler()
        # a private generator: DataLoader draws a worker base seed per epoch, and drawing it from the global
        # RNG would shift dropout and masks after a mid-epoch resume
        kwargs = {"num_workers": num_workers, "batch_size": None, "sampler": self._sampler,
                  "collate_fn": _unbatched, "generator": torch.Generator().manual_seed(0)}
        if num_workers > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=ignore_stop_signals,
                          timeout=self.decode_timeout or 0)  # a wait that long for a batch: is a worker hung?
        self._loader = DataLoader(dataset, **kwargs)
        if num_workers > 0:
            dataset.reading = ReadingSlots(num_workers)
            close_at_exit(self)

    def close(self) -> None:
        """Stop the worker processes now (they ignore SIGTERM: worker_signals.py); the next iteration starts new ones."""
        # DataLoader keeps its persistent workers in its iterator, which a suspended iteration still references:
        # told to shut down (its workers stop and are joined), then dropped.
        if self._loader._iterator is not None:
            self._loader._iterator._shutdown_workers()
            # one that did not stop (a decoder stuck on a file: SIGTERM is ignored) would be left running, and
            # Python's exit would wait on it for ever
            kill_workers(self._loader._iterator)
            self._loader._iterator = None

    def set_epoch(self, epoch: int) -> None:
        """Go to epoch `epoch`. The current epoch keeps its position (so a resumed run may call this)
        unless it has been fully consumed, in which case it starts over."""
        if epoch != self.epoch or self.position >= len(self):
            self.epoch, self.position = int(epoch), 0
            self._new_epoch_counts()
            self._plans = None

    def seek(self, epoch: int, position: int) -> None:
        """Go to batch `position` of epoch `epoch` (a position counted by the caller, without a saved loader state);
        another epoch than the current one starts with no bad files."""
        if epoch != self.epoch:
            self.set_epoch(epoch)
        self.position = int(position)

    def _new_epoch_counts(self) -> None:
        self.epoch_bad_files, self.bad_indices, self.epoch_short_files = 0, set(), 0

    def plans(self) -> list[BatchPlan]:
        """This rank's batch plans for the current epoch."""
        if self._plans is None:
            self._plans = self._plan_epoch(self.epoch)
            self._distinct = self._distinct_by_lang = None
        return self._plans

    def __len__(self) -> int:
        return len(self.plans())

    def files_in_epoch(self) -> int:
        """Number of utterances this rank loads in the current epoch."""
        return sum(len(p.indices) for p in self.plans())

    def distinct_files_in_epoch(self) -> int:
        """Number of different utterances among them (α-resampling draws some more than once): what
        `max_bad_share` is a share of."""
        plans = self.plans()
        if self._distinct is None:
            drawn = [np.asarray(p.indices, dtype=np.int64) for p in plans]
            distinct = np.unique(np.concatenate(drawn)) if drawn else np.zeros(0, np.int64)
            self._distinct, self._drawn = len(distinct), distinct
            utts = self.dataset.utts
            self._distinct_by_lang = np.bincount(utts.lang_codes[distinct], minlength=len(utts.langs))
        return self._distinct

    def __iter__(self) -> Iterator[PretrainBatch | FinetuneBatch]:
        self._limit = self.max_bad_share * self.distinct_files_in_epoch()
        self._forget_undrawn_bad_files()
        self._sampler.known_bad = self.bad_indices  # the same set: it learns this pass's bad files as they come
        # per language only where the epoch mixes several: with one, its files are the epoch's
        self._by_language = np.count_nonzero(self._distinct_by_lang) > 1
        if self._by_language:  # from the epoch's bad files so far (restored on resume; all of this draw, above)
            utts = self.dataset.utts
            known = sorted(self.bad_indices)
            self._bad_by_lang = np.bincount(utts.lang_codes[known], minlength=len(utts.langs))
        passed = False
        for loaded in self._loaded():
            passed = True
            self._account(loaded.bad)  # first: a batch that stops the run stays unread (the Trainer saves before it)
            self.position += 1
            self.short_files += loaded.short
            self.epoch_short_files += loaded.short
            if loaded.batch is not None:
                yield loaded.batch
        if passed and self.epoch_bad_files >= self.distinct_files_in_epoch():
            # max_bad_share=1 let every file go: the epoch has nothing to train on (not "too few batches")
            raise XlsrError(f"every one of {self._files_read()} in epoch {self.epoch} is bad (unreadable, or not the "
                            f"length its manifest entry says): nothing to train on; check the audio paths of "
                            f"{self._manifests() or 'its manifest'} (last: {self._last_bad}){self._changed_note()}")
        if passed and self.epoch_short_files:  # once, where the epoch ends: a count, not a line per file
            log.warning("epoch %d: %d of %d planned utterances were skipped: shorter than min_sample_size=%d "
                        "samples once decoded and augmented", self.epoch, self.epoch_short_files,
                        self.files_in_epoch(), self.dataset.min_sample_size)

    def _forget_undrawn_bad_files(self) -> None:
        """The epoch's bad files that its draw no longer holds leave its count: a run resumed mid-epoch with another
        α or epoch_size draws other files, and a bad file it will not read is no share of this epoch's."""
        if not self.bad_indices:
            return
        known = np.fromiter(self.bad_indices, np.int64, len(self.bad_indices))
        undrawn = known[~np.isin(known, self._drawn)]
        if len(undrawn):
            self.bad_indices.difference_update(undrawn.tolist())
            self.epoch_bad_files = max(0, self.epoch_bad_files - len(undrawn))

    def _loaded(self) -> Iterator[_Loaded]:
        """The epoch's loaded batches from `position` on. A worker killed by a crash while decoding a file (see
        worker_crash.py) costs that file, not the run: it is charged as bad, the workers are started anew and the
        pass goes on at the first batch not yet yielded (the same batches, less that file)."""
        if self.dataset.record is not None:
            self.dataset.record.refresh()  # files that ended another rank's process since this one started
        while True:
            self._sampler.plans = self.plans()[self.position:]
            # persistent workers, from the last pass: one may have died since, idle (no file to blame: a line) or on
            # a batch it decoded ahead for a pass the caller left part-way (validation's, stopped at a count)
            earlier = self._loader._iterator
            if earlier is not None and dead_workers(earlier):
                self._skip_crashed_file(earlier)
                continue
            try:
                with waiting_for_batch(self._loader):
                    batches = iter(self._loader)  # persistent workers are told to start the pass, and answer
            except Exception as exc:
                earlier = self._loader._iterator
                if earlier is not None and is_timeout(exc):
                    # a persistent worker did not answer: one hung on a file of the last pass is stopped and its
                    # file charged; otherwise all are started anew (the pass starts from `position` either way)
                    if not self._stop_hung_workers(earlier):
                        kill_workers(earlier)  # one may be stuck outside decoding: it would not stop when told
                        self.close()
                    continue
                if earlier is None or not dead_workers(earlier, wait=1.0):
                    raise
                self._skip_crashed_file(earlier)
                continue
            if self.dataset.reading is not None:
                defer_worker_deaths()
            waits = 0  # decode_timeouts waited in a row for the next batch, with no worker past it on one file
            while not dead_workers(batches):  # one that died while the caller trained is found before asking
                try:
                    with waiting_for_batch(self._loader):
                        loaded = next(batches)
                except StopIteration:
                    return
                except Exception as exc:  # PyTorch's RuntimeError, or a batch left in the queue by the dead worker
                    if is_timeout(exc):  # decode_timeout without a batch: a worker hung on a file, or slow ones
                        if self._stop_hung_workers(batches):
                            break
                        waits += 1
                        if waits == 3:  # said once per batch: a worker stuck outside decoding is waited on
                            log.warning("rank %d: no batch from the data workers for %.0f s, and none of them has "
                                        "been decoding one file for longer than decode_timeout=%g; waiting on (a "
                                        "slow file system, or a worker stuck outside audio decoding)", self.rank,
                                        waits * self.decode_timeout, self.decode_timeout)
                        continue  # none has been on one file that long: wait on (the iterator is as it was)
                    if not dead_workers(batches, wait=1.0):
                        raise  # a worker's own error, passed on by the DataLoader: none of them died
                    self._skip_crashed_file(batches)
                    break
                waits = 0
                yield loaded
            else:
                self._skip_crashed_file(batches)

    def _stop_hung_workers(self, batches) -> bool:
        """Kill each worker of `batches` that has been decoding one file for more than decode_timeout, charge its
        file as bad (never decoded again in the run), and stop the workers (the next pass starts new ones). False,
        and nothing done, when none has."""
        hung = self.dataset.reading.overdue(self.decode_timeout) if self.dataset.reading is not None else []
        if not hung:
            return False
        # all of them: the pass starts anew, and another may be stuck where no slot shows it (outside decoding, or
        # on a file for less than decode_timeout), which would not stop when told
        kill_workers(batches)
        self.close()
        self.dataset.reading.clear()
        charged = []
        for _, index, seconds in hung:
            message = hang_line(self.dataset.utts.audio(index), seconds, self.decode_timeout)
            self.dataset.crashed[index] = message
            charged.append((index, message))
        self._account_decoder(charged)
        return True

    def _skip_crashed_file(self, batches) -> None:
        """After workers of `batches` died: charge the file a decoder crash killed each on (two at once cost one
        restart), and stop the workers (the next pass starts new ones, which know the files). Any other death
        (SIGKILL, an exit, a crash outside decoding) stops the run."""
        charged = []
        # close(): waits for the others, and kills those that do not stop
        for code, index in worker_deaths(batches, self.dataset.reading, self.close):
            message = crash_line(code, self.dataset.utts.audio(index) if index is not None else None, self.rank)
            self.dataset.crashed[index] = message
            charged.append((index, message))
        self._account_decoder(charged)

    def _account_decoder(self, charged: list[tuple[int, str]]) -> None:
        """Charge files a decoder crashed or hung on (each already in `crashed`: never decoded again in the run) to
        this epoch where its draw holds them. One it does not (a babble talker, or a file of a batch decoded ahead
        for an abandoned pass of another epoch) is said, and charged by the epoch that draws it, as any known-bad file."""
        drawn = np.isin(np.fromiter((i for i, _ in charged), np.int64, len(charged)), self._drawn)
        for (_, message), here in zip(charged, drawn):
            if not here:
                log.warning("skipping bad audio: %s (not in epoch %d's draw)", message, self.epoch)
        self._account([c for c, here in zip(charged, drawn) if here])

    def _account(self, bad: list[tuple[int, str]]) -> None:
        """Charge a batch's bad files (each once per epoch), stop the run past max_bad_share, watch languages. Files
        whose charge stops the run are left uncharged: the loader is as it was before them, so a checkpoint saved at
        the error (the Trainer's) reads them again on resume, once the data are mended or max_bad_share raised. One a
        decoder crashed or hung on stays in `crashed`: the resumed run charges it, once, without decoding it again."""
        by_lang = self._bad_by_lang.copy() if self._by_language and bad else None  # (a batch without bad files: none)
        fresh = self._charge(bad)
        try:
            if self.epoch_bad_files > self._limit:
                raise XlsrError(f"{self.epoch_bad_files} of {self._files_read()} in epoch "
                                f"{self.epoch} are bad (unreadable, or not the length their manifest entry says), "
                                f"more than max_bad_share={self.max_bad_share:g} (last: {bad[-1][1] if bad else '?'}); "
                                f"`xlsr data check --write-clean` lists them and writes manifests without them, or raise "
                                f"max_bad_share{self._changed_note()}")
            if fresh and self._by_language:
                self._check_languages(fresh)
        except XlsrError:
            self.bad_indices.difference_update(i for i, _ in fresh)
            self.bad_files -= len(fresh)
            self.epoch_bad_files -= len(fresh)
            if by_lang is not None:
                self._bad_by_lang = by_lang
            raise

    def _files_read(self, count: int | None = None, what: str = "") -> str:
        """'N audio files' (of this epoch; `count` of them, of a kind `what`, when given), said as this rank's share
        under DDP: each rank counts its own bad files, so a count that names no rank reads as the whole manifest's."""
        count = self.distinct_files_in_epoch() if count is None else count
        files = f"{count} {what + ' ' if what else ''}audio file{'' if count == 1 else 's'}"
        return files if self.world_size == 1 else f"the {files} rank {self.rank} of {self.world_size} reads"

    def _check_languages(self, fresh: list[tuple[int, str]]) -> None:
        """Watch the languages of the epoch's new bad files (`fresh`: index, message): a language is warned about once
        per epoch when more than max_bad_share of its files are bad; all bad stops the run where they are at least
        1 / max_bad_share files (fewer all bad may be a few damaged files one rank drew: warned about)."""
        utts, share = self.dataset.utts, self.max_bad_share
        for i, message in fresh:
            code = int(utts.lang_codes[i])
            lang, total = utts.langs[code], int(self._distinct_by_lang[code])
            self._bad_by_lang[code] += 1
            bad = int(self._bad_by_lang[code])
            if bad == total and share * total >= 1 and share < 1:
                # a language asked for and unreadable as a whole: a path or mount gone, not a few damaged files
                raise XlsrError(f"language {lang}: every one of {self._files_read(total, lang)} in epoch "
                                f"{self.epoch} is bad (unreadable, or not the length its manifest entry says): the run "
                                f"would go on without {lang}; check the audio paths of "
                                f"{self._manifests(lang) or 'its manifest'}, or leave {lang} out (last: {message})"
                                f"{self._changed_note()}")
            source = self._manifests(lang)
            source = f" ({source})" if source else ""
            if bad == total:  # max_bad_share=1, or too few of the language's files in the epoch to tell
                log.warning("language %s: %d of %s in epoch %d %s bad: %s is missing from the epoch's language "
                            "mixture%s", lang, bad, self._files_read(total, lang), self.epoch,
                            "are" if bad > 1 else "is", lang, source)
            elif bad - 1 <= share * total < bad:  # crossed just now: once per epoch, as the count only grows
                log.warning("language %s: %d of %s in epoch %d %s bad, more than max_bad_share=%g of the language: "
                            "its share of the language mixture shrinks%s", lang, bad, self._files_read(total, lang),
                            self.epoch, "are" if bad > 1 else "is", share, source)

    def _manifests(self, lang: str | None = None) -> str:
        """The manifests that the epoch's files (of language `lang`) come from, a few by path; '' for files listed
        by no manifest (an index made from objects)."""
        paths = sorted({t.source for t in self.dataset.utts.tables if t.source and (lang is None or lang in t.langs)})
        shown = ", ".join(paths[:3])
        return shown if len(paths) <= 3 else f"{shown} and {len(paths) - 3} more manifests"

    def _changed_note(self) -> str:
        """Why the files may be bad, when a manifest changed since this run read it: '; <manifest> changed ...'."""
        changed = changed_manifests(self.dataset.utts)
        if not changed:
            return ""
        them = "it" if len(changed) == 1 else "them"
        return (f"; {', '.join(changed)} changed since this run read {them} (re-imported?): restart the run to read "
                f"{them} again")

    def _charge(self, bad: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Report and count the bad files of a batch, each once per epoch; those new to the epoch."""
        fresh = []
        for i, message in bad:
            if i in self.bad_indices:
                continue  # drawn again before the sampler knew it was bad
            self.bad_indices.add(i)
            fresh.append((i, message))
            log.warning("skipping bad audio: %s", message)
            self._last_bad = message
            self.bad_files += 1
            self.epoch_bad_files += 1
        return fresh

    def state_dict(self) -> dict:
        """Epoch, batches already yielded in it, the bad-file counters, this epoch's bad utterances and the
        fingerprints of the manifests they are positions in."""
        return {"epoch": self.epoch, "position": self.position, "bad_files": self.bad_files,
                "epoch_bad_files": self.epoch_bad_files, "bad_indices": sorted(self.bad_indices),
                "short_files": self.short_files, "epoch_short_files": self.epoch_short_files,
                "crashed": [[i, message] for i, message in sorted(self.dataset.crashed.items())],
                "manifests": manifest_stamps(self.dataset.utts),
                # pretraining: language draws weighed by the audio a crop takes (absent: an earlier xlsr's, by
                # whole lengths, kept so through every later resume)
                **({"draws": "cropped"} if self.sampler is not None and not self.sampler.whole_lengths else {})}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields batch `position` of epoch `epoch` (of the data as it is now: a manifest
        changed since the checkpoint is warned about, and the epoch's bad files are counted anew)."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.bad_files, self.epoch_bad_files = int(state["bad_files"]), int(state["epoch_bad_files"])
        self.bad_indices = {int(i) for i in state.get("bad_indices", ())}  # absent: a checkpoint of an earlier version
        self.short_files = int(state.get("short_files", 0))
        self.epoch_short_files = int(state.get("epoch_short_files", 0))
        self.dataset.crashed = {int(i): str(message) for i, message in state.get("crashed", ())}
        if self.sampler is not None and state.get("draws") != "cropped":  # a run an earlier xlsr started
            self.sampler.draw_whole_lengths()  # resumes with the draws it started with
        self._plans = None
        saved, now = state.get("manifests"), manifest_stamps(self.dataset.utts)  # absent: an earlier version's
        if saved is not None:  # resolved, as manifest_stamps keys them: the same manifest spelled otherwise is no change
            saved = {os.path.realpath(m): stamp for m, stamp in saved.items()}
        changed = [] if saved is None else [m for m in {**saved, **now} if saved.get(m) != now.get(m)]
        if changed:
            kinds = {"changed since the checkpoint was written (re-imported?)": [m for m in changed if m in saved and m in now],
                     "added since the checkpoint": [m for m in changed if m not in saved],
                     "left out since the checkpoint": [m for m in changed if m not in now]}
            what = "; ".join(f"{', '.join(ms)} {kind}" for kind, ms in kinds.items() if ms)
            log.warning("%s: epoch %d resumes at batch %d in the order of the new data, its bad files counted anew",
                        what, self.epoch, self.position)
            self.epoch_bad_files, self.bad_indices = 0, set()  # positions in the old data: other utterances now
            self.dataset.crashed = {}


def check_crop_fits(max_tokens: int, max_sample_size: int | None) -> None:
    """XlsrError, saying the way out, when a batch of `max_tokens` samples cannot hold one crop of `max_sample_size`."""
    if max_sample_size and max_sample_size > max_tokens:
        raise XlsrError(f"max_tokens ({max_tokens}) is smaller than max_sample_size ({max_sample_size}): lower "
                        f"--max-sample-size to at most {max_tokens}, or raise --max-tokens to at least "
                        f"{max_sample_size}")


def record_decoding(loader, record: DecodingRecord | None):
    """`loader` (a BatchLoader, or a shard stream's ShardLoader), keeping what this process decodes itself in `record`
    (decoding_record.py: a file that crashed an earlier run's process is skipped)."""
    if record is not None:
        loader.dataset.record = record
    return loader


def pretrain_loader(utts: UtteranceIndex | Sequence[Utterance], *, max_tokens: int, min_sample_size: int = 32000,
                    max_sample_size: int = 320000, alpha: float = 0.5, seed: int = 0, rank: int = 0,
                    world_size: int = 1, num_workers: int = 0, normalize: bool = False,
                    max_bad_share: float = 0.05, epoch_size: int | None = None,
                    prefetch_factor: int = 2, augment: AugmentSpec | None = None,
                    max_utterances: int | None = None, decode_timeout: float | None = None) -> BatchLoader:
    """Pretraining batches: α-resampled languages, crops to the batch's shortest (≤ max_sample_size).

    Utterances shorter than `min_sample_size` samples are skipped. `max_tokens` bounds B × crop length, and
    `max_utterances` (None: no cap) bounds B (fairseq's dataset.batch_size).
    `augment`: acoustic effects applied on the fly (module docstring); an upsampled utterance drawn twice in
    an epoch gets its own effects each time. `decode_timeout`: seconds a worker may decode one file before it is
    stopped and the file charged as bad (None: waited on; BatchLoader).
    """
    check_rank(rank, world_size)
    augment = augment if augment is not None and augment.enabled else None
    check_crop_fits(max_tokens, max_sample_size)
    if max_utterances is not None and max_utterances < 1:
        raise XlsrError(f"max_utterances: must be at least 1 (or None: no cap), got {max_utterances}")
    utts = as_index(utts)
    long_enough = utts.num_samples >= min_sample_size
    kept = _selected(utts, long_enough)
    if len(kept) < len(utts):
        log.info("skipping %d of %d utterances shorter than min_sample_size=%d",
                 len(utts) - len(kept), len(utts), min_sample_size)
    if not len(kept):
        raise XlsrError(f"no utterance is at least min_sample_size={min_sample_size} samples long")
    _check_no_language_lost(utts, long_enough, min_sample_size)
    sampler = LanguageSampler(kept, alpha=alpha, seed=seed, epoch_size=epoch_size, max_sample_size=max_sample_size)
    lengths = kept.num_samples

    def plan_epoch(epoch: int) -> list[BatchPlan]:
        order = sampler.epoch_indices(epoch)  # already shuffled: random ties
        # packed by slot (position in `order`): an utterance drawn twice has two lengths under speed perturbation
        table = draw_epoch_effects(augment, seed, epoch, len(order))  # a row per slot
        slot_lengths = lengths[order]
        if table is not None:  # a faster speed must not take an utterance below min_sample_size
            table["speed"], slot_lengths = _speeds_within(table["speed"], slot_lengths, epoch,
                                                          shortest=min_sample_size, why=f"shorter than "
                                                          f"min_sample_size={min_sample_size} samples")
        slots, bounds = pack_spans(slot_lengths, np.arange(len(order)), max_tokens, crop_to_shortest=True,
                                   max_sample_size=max_sample_size, max_utterances=max_utterances)
        members = order[slots]
        perm = np.random.default_rng([seed, epoch, 1]).permutation(len(bounds) - 1)
        key = effects_key(seed, epoch)
        plans = [BatchPlan(tuple(members[bounds[b]:bounds[b + 1]].tolist()), (seed, epoch, int(b)),
                           None if table is None else
                           PlannedEffects(augment, key, seed, table[slots[bounds[b]:bounds[b + 1]]]))
                 for b in perm]
        return shard(plans, rank, world_size, equal=True)

    dataset = _BatchDataset(kept, pretrain=True, normalize=normalize, min_sample_size=min_sample_size,
                            max_sample_size=max_sample_size, babble=babble_talkers(len(kept), seed, augment))
    loader = BatchLoader(dataset, plan_epoch, num_workers=num_workers, prefetch_factor=prefetch_factor,
                         max_bad_share=max_bad_share, rank=rank, world_size=world_size, decode_timeout=decode_timeout)
    loader.sampler = sampler  # the language table (hours, weights) for logs
    return loader


def length_limit(max_tokens: int, max_sample_size: int | None) -> int:
    """The longest utterance, in samples, that a fine-tuning batch takes: max_tokens, or max_sample_size if smaller."""
    return min(max_tokens, max_sample_size or max_tokens)


def finetune_loader(utts: UtteranceIndex | Sequence[Utterance], vocab, *, max_tokens: int, shuffle: bool = True, seed: int = 0,
                    normalize: bool = False, label_field: str = "phones", rank: int = 0, world_size: int = 1,
                    num_workers: int = 0, max_bad_share: float = 0.05, max_sample_size: int | None = None,
                    oov: str = "error", prefetch_factor: int = 2, augment: AugmentSpec | None = None,
                    keep_long: bool = False, num_frames: Callable[[int], int] | None = None,
                    decode_timeout: float | None = None) -> BatchLoader:
    """Fine-tuning batches: zero-padded waveforms with lengths, label ids from `vocab.encode`.

    `label_field`: "phones" or "text"/"chars". Utterances longer than `max_tokens` (or `max_sample_size`)
    are skipped with a warning, or with `keep_long` (validation: no gradients) kept, one longer than
    `max_tokens` alone in its batch. `oov`: "error" | "warn" | "unk" for label symbols outside the vocabulary.
    With shuffle=False (evaluation) batches are in length order and no batch is dropped under DDP.
    `augment`: acoustic effects applied on the fly (module docstring), for training data; a slower speed never
    takes an utterance past the limit, and `num_frames` (the model's frame count of a length), when given, keeps a
    faster one from leaving a label more symbols than frames. `decode_timeout`: as pretrain_loader.
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
        table = draw_epoch_effects(augment, seed, epoch, len(kept))  # a row per utterance: each comes once an epoch
        epoch_lengths = lengths
        if table is not None:
            if num_frames is not None:
                table["speed"] = _label_fitting_speeds(table["speed"], lengths, labels, num_frames, epoch)
            # a slower speed must not take an utterance past the batch limit
            table["speed"], epoch_lengths = _speeds_within(table["speed"], lengths, epoch, longest=limit,
                                                           why=f"longer than {limit} samples (max_tokens, or "
                                                               f"max_sample_size when smaller)")
        batches = pack_batches(epoch_lengths, order, max_tokens, crop_to_shortest=False)
        if shuffle:
            batches = [batches[b] for b in rng.permutation(len(batches))]
        key = effects_key(seed, epoch)
        plans = [BatchPlan(tuple(b), (seed, epoch, n),
                           None if table is None else PlannedEffects(augment, key, seed, table[np.asarray(b)]))
                 for n, b in enumerate(batches)]
        return shard(plans, rank, world_size, equal=shuffle)

    dataset = _BatchDataset(kept, pretrain=False, normalize=normalize, labels=labels,
                            babble=babble_talkers(len(kept), seed, augment))
    return BatchLoader(dataset, plan_epoch, num_workers=num_workers, prefetch_factor=prefetch_factor,
                       max_bad_share=max_bad_share, rank=rank, world_size=world_size, decode_timeout=decode_timeout)


def _speeds_within(speed: np.ndarray, lengths: np.ndarray, epoch: int, *, shortest: int = 0,
                   longest: int | None = None, why: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(`speed`, the lengths it gives) without the speed perturbation (NaN) of each utterance that it would take out
    of [shortest, longest] samples while its own length is inside: the loader planned for lengths in that range
    (pretraining drops a shorter one, a fine-tuning batch takes nothing longer), and speed 1 keeps it there."""
    lengths = np.asarray(lengths, dtype=np.int64)
    sped = augmented_lengths(lengths, speed)
    inside, outside = lengths >= shortest, sped < shortest
    if longest is not None:
        inside &= lengths <= longest
        outside |= sped > longest
    revert = inside & outside
    if not revert.any():
        return speed, sped
    log.warning("epoch %d: %d of %d utterances play at speed 1: the drawn speed would make them %s", epoch,
                int(revert.sum()), len(speed), why)
    return np.where(revert, np.nan, speed), np.where(revert, lengths, sped)


def _label_fitting_speeds(speed: np.ndarray, lengths: np.ndarray, labels: LabelIds,
                          num_frames: Callable[[int], int], epoch: int) -> np.ndarray:
    """`speed` (NaN: none) without the speed perturbation of the utterances it would leave fewer frames than their
    label needs (a faster speed shortens the audio after the CTC filter passed it: CTC would have no path,
    zero_infinity a 0 loss)."""
    faster = np.flatnonzero(speed > 1.0)  # a slower speed only lengthens (NaN compares False)
    sped = augmented_lengths(np.asarray(lengths)[faster], speed[faster])
    short = [i for i, n in zip(faster.tolist(), sped.tolist()) if num_frames(n) < ctc_min_frames(labels[i])]
    if not short:
        return speed
    log.warning("epoch %d: %d of %d utterances play at speed 1: the drawn speed would leave fewer frames than "
                "their labels need", epoch, len(short), len(speed))
    fitted = speed.copy()
    fitted[short] = np.nan
    return fitted


def _check_no_language_lost(utts: UtteranceIndex, long_enough: np.ndarray, min_sample_size: int) -> None:
    """One XlsrError line for a language none of whose utterances is at least min_sample_size long: skipped, it would
    drop out of the run unnoticed (a language of few, short recordings, the low-resource one the run is for)."""
    codes = utts.lang_codes
    lost = np.setdiff1d(np.unique(codes), np.unique(codes[long_enough]))
    if len(lost):
        lang = utts.langs[int(lost[0])]
        mine = codes == lost[0]
        also = f" (and {', '.join(utts.langs[int(c)] for c in lost[1:])})" if len(lost) > 1 else ""
        raise XlsrError(f"language {lang}{also}: none of its {int(mine.sum())} utterances is at least "
                        f"min_sample_size={min_sample_size} samples ({min_sample_size / SAMPLE_RATE:g} s) long (the "
                        f"longest: {utts.num_samples[mine].max() / SAMPLE_RATE:.2f} s), so it would not be trained on; "
                        f"lower --min-sample-size, or leave it out (--langs)")


def _selected(utts: UtteranceIndex, keep: np.ndarray) -> UtteranceIndex:
    """`utts` where `keep` holds (itself when it holds everywhere: no copy of its columns)."""
    return utts if keep.all() else utts.subset(np.flatnonzero(keep))
