"""Streaming batches from a sharded corpus: α-mixed language streams, shuffle buffer, length-packed batches.

Who reads which shard. The G = world_size × max(num_workers, 1) data workers of a run are its *consumers*
(consumer c = rank × workers + worker). Each language's shards form an endless sequence of passes, each pass a
permutation of them drawn from (seed, language, pass); position k of that sequence belongs to consumer k mod G.
So within one pass every shard, hence every utterance, of a language is read by exactly one consumer, and a
language with fewer shards than consumers still reaches every consumer (the deal rotates from pass to pass).

In a consumer. Each next utterance comes from language l with the probability that makes l's share of the audio
read p_l ∝ (n_l/N)^α (`utterance_weights` on the index's hours and utterance counts, as for manifests); a
language whose pass runs out starts its next pass, so the α share,
not the corpus, sets how often each language is seen. Utterances go through a shuffle buffer (up to `shuffle_buffer`
undecoded utterances, a few hundred KB each; it grows to that size over the first 2 × shuffle_buffer) into windows of about `window_batches` batches, which are packed
by length under `max_tokens` exactly as the manifest loader packs (`pack_batches`), decoded and cut into the
same PretrainBatch/FinetuneBatch (`crop_batch`, `pad_batch`).

Epochs. The streams have no end, so an epoch is a fixed number of batches per rank, equal on every rank (DDP
steps in lockstep): `epoch_batches`, by default as many as the split's audio fills at `max_tokens`.

Resume, exact at shard granularity. Every batch carries its consumer's state after it was made: per language,
the number of its shards that are *finished* (every utterance read from them has left in a batch, or was
dropped) — counted as a prefix of the consumer's sequence — and the consumer's random state. The loader keeps
the state of the last batch it handed over from each consumer; a checkpoint stores them. A resumed run starts
each language of each consumer at its first unfinished shard, from that shard's start, with the stored random
state: no utterance is lost, and the utterances of the shards that were open at the checkpoint (at most one per
language plus those the shuffle buffer and window held) are read a second time. Resuming twice from one
checkpoint gives the same batches. With another number of ranks or workers the position is converted (every
consumer restarts after the shards every old consumer had finished) and a warning says so.

Bad input: a damaged shard's missing utterances and undecodable audio count as bad files against
`max_bad_share` of an epoch's utterances, each damaged shard or utterance once per epoch however often it is
re-read (data/shard_reader.py, `ShardLoader`); an index that describes another shard (more utterances, another
language) ends the run with one line. A language none of whose utterances passes the filters (min_sample_size;
length and labels when fine-tuning) is left out of the draw with a warning, and the run stops with one line when
every language is (`_check_language`). A fine-tuning utterance within the length limit that the labeler refuses
(an empty label, or more frames needed than its audio gives) is skipped, and the first of each language is named in
a warning once per run; one longer than the limit is skipped as the manifest path skips it, and the first of each
language is named in a warning once
per run (`_report_skipped`: the index has no utterance lengths, so no count is known before the stream reaches
them); one whose FLAC decodes to another length than its .json says is a bad file. Workers never raise: they pass
messages with their batches, and the loader raises or logs them. Around each decoding a consumer asks the loader's
`DecodeGuard` whether the utterance is known to crash or hang the decoder (then it is a bad file, not decoded) and
lets it name the utterance while it decodes (data/shard_loader.py: a crash or hang costs the utterance, not the run).
"""

from __future__ import annotations

import bisect
import contextlib
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlsr.data.audio import checked_length, decode_audio
from xlsr.data.batching import (
    FinetuneBatch,
    PretrainBatch,
    crop_batch,
    length_limit,
    pack_batches,
    pad_batch,
)
from xlsr.data.sampling import utterance_weights
from xlsr.data.shard_index import ShardInfo
from xlsr.data.shard_reader import Bad, ShardEnd, ShardSample, read_shard
from xlsr.errors import AudioError

Labeler = Callable[[dict], "list[int] | None"]  # JSON fields -> label ids, or None to drop the utterance


@dataclass(frozen=True)
class StreamSpec:
    """What every consumer of one run reads and how it batches (plain data: it travels to the workers)."""

    root: Path
    shards: tuple[ShardInfo, ...]
    max_tokens: int
    alpha: float = 0.5
    seed: int = 0
    pretrain: bool = True  # crop to the shortest (PretrainBatch); else pad with labels (FinetuneBatch)
    min_sample_size: int = 0  # shorter utterances are dropped (pretraining)
    max_sample_size: int | None = None  # pretraining: crop cap; fine-tuning: longer utterances are dropped
    max_utterances: int | None = None  # most utterances per batch (fairseq's dataset.batch_size); None: any
    normalize: bool = False
    labeler: Labeler | None = None  # fine-tuning
    shuffle_buffer: int = 1000
    window_batches: int = 16
    passes: int | None = None  # None: endless (training); 1: each shard once, in index order (validation)

    def langs(self) -> list[str]:
        return sorted({s.lang for s in self.shards})

    def by_lang(self) -> dict[str, list[ShardInfo]]:
        return {lang: [s for s in self.shards if s.lang == lang] for lang in self.langs()}

    def hours(self) -> dict[str, float]:
        """Hours per language, from the index: the input of α sampling."""
        return {lang: sum(s.hours for s in shards) for lang, shards in self.by_lang().items()}

    def utterances(self) -> dict[str, int]:
        """Utterances per language, from the index."""
        return {lang: sum(s.utterances for s in shards) for lang, shards in self.by_lang().items()}


def assigned_shard(k: int, n: int, seed: int, lang: str, shuffle: bool = True) -> int:
    """Which of a language's `n` shards sits at position k of its endless sequence of shuffled passes."""
    p, i = divmod(k, n)
    if not shuffle:
        return i
    return int(np.random.default_rng([seed, zlib.crc32(lang.encode()), p]).permutation(n)[i])


def utterance_key(sample: ShardSample) -> str:
    """What names an utterance of a shard folder across runs (and its bad-file charge): SHARD_PATH:MEMBER_KEY."""
    return f"{sample.shard}:{sample.key}"


class DecodeGuard:
    """What a consumer asks around each decoding (the loader's, data/shard_loader.py): whether the utterance is known
    to crash or hang the decoder (a line to charge it with, or None), and a context naming it (its key, and its name
    in the words of bad-file lines: 'SHARD: utterance ID') while it is decoded. This one: nothing known, nothing
    named."""

    def known_bad(self, key: str) -> str | None:
        return None

    def decoding(self, key: str, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


@dataclass
class _Item:
    lang: str
    ordinal: int  # which of this consumer's shards of `lang` it came from
    sample: ShardSample


@dataclass
class Produced:
    """What a consumer hands the loader: a batch (or None) with the consumer's state and its problems."""

    batch: PretrainBatch | FinetuneBatch | None
    consumer: int
    state: dict
    bad: list[Bad] = field(default_factory=list)
    fatal: str | None = None
    once: list[Bad] = field(default_factory=list)  # warnings the loader gives once per run per key


class ConsumerStream:
    """One consumer's share of the corpus as batches (module docstring); `state` resumes it."""

    def __init__(self, spec: StreamSpec, consumer: int, consumers: int, state: dict | None = None,
                 guard: DecodeGuard | None = None) -> None:
        self.spec, self.consumer, self.consumers = spec, consumer, consumers
        self.guard = guard or DecodeGuard()
        self.by_lang = spec.by_lang()
        # the next utterance's language: each language's share of the audio read is its p_l (data/sampling.py)
        self.weights = utterance_weights(spec.hours(), spec.utterances(), spec.alpha)
        self.rng = np.random.default_rng([spec.seed, consumer])
        self.done = {lang: 0 for lang in self.by_lang}
        if state:
            self.rng.bit_generator.state = state["rng"]
            self.done.update({lang: int(j) for lang, j in state["done"].items() if lang in self.done})
        self.next_ordinal = dict(self.done)
        self.open: dict[str, Iterator] = {}
        self.pending: dict[str, dict[int, list]] = {lang: {} for lang in self.by_lang}  # ordinal -> [in flight, ended]
        self.exhausted: set[str] = set()
        self.checked: set[str] = set()  # languages known to hold an utterance the filters keep, or searched for one
        self.dropped: set[str] = set()  # languages none of whose shards holds one: left out of the draw
        self.bad: list[Bad] = []
        self.once: list[Bad] = []
        self.told: set[tuple[str, str]] = set()  # (language, reason) whose first skipped utterance was reported
        self.fatal: str | None = None
        self.empty_run = dict.fromkeys(self.by_lang, 0)

    def state(self) -> dict:
        """Finished shards per language and the random state: where a resumed consumer starts."""
        return {"done": dict(self.done), "rng": self.rng.bit_generator.state}

    # --- reading ----------------------------------------------------------------------------------
    def _shard_at(self, lang: str, ordinal: int) -> ShardInfo | None:
        shards = self.by_lang[lang]
        k = self.consumer + ordinal * self.consumers
        if self.spec.passes is not None and k >= self.spec.passes * len(shards):
            return None
        return shards[assigned_shard(k, len(shards), self.spec.seed, lang, shuffle=self.spec.passes is None)]

    def _next_item(self, lang: str) -> _Item | None:
        """The next utterance of `lang` in this consumer's shards; None when its finite pass is over."""
        while self.fatal is None:
            if lang not in self.open:
                info = self._shard_at(lang, self.next_ordinal[lang])
                if info is None:
                    self.exhausted.add(lang)
                    return None
                self.open[lang] = read_shard(self.spec.root, info)
                self.pending[lang][self.next_ordinal[lang]] = [0, False]
                self.next_ordinal[lang] += 1
            ordinal = self.next_ordinal[lang] - 1
            got = next(self.open[lang])
            if isinstance(got, ShardSample):
                self.pending[lang][ordinal][0] += 1
                self.empty_run[lang] = 0
                return _Item(lang, ordinal, got)
            self._shard_ended(lang, ordinal, got)
        return None

    def _shard_ended(self, lang: str, ordinal: int, end: ShardEnd) -> None:
        del self.open[lang]
        self.pending[lang][ordinal][1] = True
        self._advance(lang)
        self.bad += end.bad
        self.fatal = end.fatal
        self.empty_run[lang] = self.empty_run[lang] + 1 if end.read == 0 else 0
        if self.fatal is None and self.empty_run[lang] > len(self.by_lang[lang]):
            self.fatal = f"{self.spec.root}: no readable utterance in any {lang} shard of this split"
        if self.fatal is None and self.spec.passes is None and lang not in self.checked:
            self._check_language(lang)

    def _check_language(self, lang: str) -> None:
        """Once per language, when one of its shards ends before any of its utterances was kept: search its shards
        for one the filters keep (stopping at the first); if none holds one, leave the language out of the draw.
        Without this an endless stream whose every utterance is filtered out would read for ever."""
        self.checked.add(lang)
        read = 0
        for info in self.by_lang[lang]:
            shard = read_shard(self.spec.root, info)
            try:
                for got in shard:
                    if isinstance(got, ShardSample):
                        read += 1
                        if self._keep(got.meta) is not False:
                            return
            finally:
                shard.close()
        if read:  # nothing read at all: the bad-file count and the empty-shard check above see to it
            self._drop(lang)

    def _drop(self, lang: str) -> None:
        self.dropped.add(lang)
        where = self.spec.root / self.spec.shards[0].split
        self.bad.append(Bad(f"{where}: {lang} dropped", 0,
                            f"{where}: no {lang} utterance {self._kept_words()}; {lang} is left out"))
        if self.dropped == set(self.by_lang):
            self.fatal = f"{where}: no utterance {self._kept_words()}"

    def _kept_words(self) -> str:
        """What an utterance must be to be kept, in words."""
        spec = self.spec
        if spec.pretrain:
            return f"is at least min_sample_size={max(spec.min_sample_size, 1)} samples long"
        limit = length_limit(spec.max_tokens, spec.max_sample_size)
        return f"is at most {limit} samples long (max_tokens, max_sample_size) and has labels"

    def _advance(self, lang: str) -> None:
        """Move `done` past the leading shards whose every utterance has been used."""
        pending = self.pending[lang]
        while self.done[lang] in pending and pending[self.done[lang]] == [0, True]:
            del pending[self.done[lang]]
            self.done[lang] += 1

    def release(self, item: _Item) -> None:
        """An utterance has left (in a batch, or dropped)."""
        self.pending[item.lang][item.ordinal][0] -= 1
        self._advance(item.lang)

    def _language_cdf(self, active: tuple[str, ...]) -> list[float]:
        """The cumulative α weights of the `active` languages, as `Generator.choice(p=...)` builds them."""
        p = np.array([self.weights[lang] for lang in active])
        cdf = (p / p.sum()).cumsum()
        cdf /= cdf[-1]
        return cdf.tolist()

    def items(self) -> Iterator[_Item]:
        """Utterances, languages drawn by α, through the shuffle buffer (endless unless `passes`)."""
        langs = list(self.by_lang)
        buffer: list[_Item] = []
        size = self.spec.shuffle_buffer if self.spec.passes is None else 0
        reads = 0
        cdfs: dict[tuple[str, ...], list[float]] = {}
        while self.fatal is None and len(self.exhausted) < len(langs):
            active = tuple(lang for lang in langs if lang not in self.exhausted and lang not in self.dropped)
            if active not in cdfs:
                cdfs[active] = self._language_cdf(active)
            cdf = cdfs[active]
            # what rng.choice(len(active), p=...) draws, the same number from the same state, without its ~50 µs
            # of argument checks per call (once per utterance)
            item = self._next_item(active[bisect.bisect_right(cdf, self.rng.random())])
            if item is None:
                continue
            buffer.append(item)
            reads += 1
            if len(buffer) > min(size, reads // 2):  # the buffer fills up gradually: the first batch comes soon
                j = int(self.rng.integers(len(buffer))) if size else 0
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        while buffer and self.fatal is None:
            yield buffer.pop(int(self.rng.integers(len(buffer))))

    # --- batching ---------------------------------------------------------------------------------
    def _keep(self, meta: dict) -> list[int] | bool:
        """Whether an utterance (its JSON fields) is used (its label ids when fine-tuning)."""
        spec, n = self.spec, meta["num_samples"]
        if spec.pretrain:
            return n >= max(spec.min_sample_size, 1)
        if n > length_limit(spec.max_tokens, spec.max_sample_size):
            return False
        ids = spec.labeler(meta) if spec.labeler else []
        return ids if ids else False

    def _report_skipped(self, item: _Item) -> None:
        """Of the fine-tuning utterances within the length limit that the labeler refused, and of those longer than
        the limit, the first of each language is named (once per run, by the loader), as the manifest path names the
        first few of those it filters out in one line. (Pretraining's
        min_sample_size filter is not reported here.)"""
        spec, sample = self.spec, item.sample
        if spec.pretrain:
            return
        n, limit = sample.meta["num_samples"], length_limit(spec.max_tokens, spec.max_sample_size)
        reason = f"longer than {limit}" if n > limit else "unlabelled"
        if (item.lang, reason) in self.told:  # one line per language and run, not per utterance and epoch
            return
        self.told.add((item.lang, reason))
        where, first = spec.root / spec.shards[0].split, f"{sample.shard}: utterance {sample.meta.get('id', sample.key)}"
        if n > limit:
            what = (f"longer than {limit} samples (max_tokens, max_sample_size) are skipped as they stream by (the index "
                    f"does not say how many; the first: {first}, {n} samples)")
        else:
            what = (f"whose label is empty or needs more frames than their audio gives are skipped as they stream by "
                    f"(the first: {first} skipped, {n} samples)")
        self.once.append(Bad(f"{where}: {item.lang} {reason}", 0, f"{where}: {item.lang} utterances {what}"))

    def batches(self) -> Iterator[Produced]:
        """Batches of about `window_batches` × `max_tokens` windows of the item stream, then a last report."""
        window, labels, tokens = [], [], 0
        budget = self.spec.window_batches * self.spec.max_tokens
        cap = self.spec.max_sample_size if self.spec.pretrain else None
        for item in self.items():
            kept = self._keep(item.sample.meta)
            if kept is False:
                self._report_skipped(item)
                self.release(item)
                continue
            self.checked.add(item.lang)
            window.append(item)
            labels.append(kept if isinstance(kept, list) else None)
            tokens += min(item.sample.meta["num_samples"], cap or math.inf)
            if tokens >= budget:
                yield from self._emit(window, labels)
                window, labels, tokens = [], [], 0
        if window and self.fatal is None:
            yield from self._emit(window, labels)
        if self.fatal is not None or self.bad or self.once:
            yield self._produced(None)

    def _emit(self, window: list[_Item], labels: list) -> Iterator[Produced]:
        spec = self.spec
        lengths = np.array([it.sample.meta["num_samples"] for it in window])
        groups = pack_batches(lengths, np.arange(len(window)), spec.max_tokens, crop_to_shortest=spec.pretrain,
                              max_sample_size=spec.max_sample_size if spec.pretrain else None,
                              max_utterances=spec.max_utterances)
        if spec.passes is None:
            groups = [groups[g] for g in self.rng.permutation(len(groups))]
        for group in groups:
            yield self._produced(self._batch([window[i] for i in group], [labels[i] for i in group]))
            if self.fatal is not None:
                return

    def _batch(self, items: list[_Item], labels: list) -> PretrainBatch | FinetuneBatch | None:
        waves, rows = [], []
        for item, label in zip(items, labels):
            sample = item.sample
            name, key = f"{sample.shard}: utterance {sample.meta.get('id', sample.key)}", utterance_key(sample)
            known = self.guard.known_bad(key)  # a decoder crashed or hung on it before: not decoded again
            try:
                if known is not None:
                    raise AudioError(known)
                with self.guard.decoding(key, name):
                    wave = decode_audio(sample.flac, name, normalize=self.spec.normalize)
                waves.append(checked_length(wave, sample.meta["num_samples"], name, listed_by="its .json"))
                rows.append((item, label))
            except AudioError as exc:
                self.bad.append(Bad(key, 1, str(exc)))
            self.release(item)
        if not rows:
            return None
        langs = [it.lang for it, _ in rows]
        if self.spec.pretrain:
            return crop_batch(waves, langs, self.rng, self.spec.max_sample_size)
        ids = [str(it.sample.meta.get("id", it.sample.key)) for it, _ in rows]
        return pad_batch(waves, [label for _, label in rows], langs, ids)

    def _produced(self, batch) -> Produced:
        out = Produced(batch, self.consumer, self.state(), self.bad, self.fatal, self.once)
        self.bad, self.once = [], []
        return out


def moved_states(states: dict[int, dict], old_consumers: int, consumers: int, spec: StreamSpec) -> dict[int, dict]:
    """Consumer states for another number of consumers: each restarts after what every old consumer finished."""
    start = {}  # per language: the first position of the shared sequence some old consumer has not finished
    for lang in spec.langs():  # an old consumer without a state (no batch yet) has finished nothing
        start[lang] = min(c + int(states.get(c, {}).get("done", {}).get(lang, 0)) * old_consumers
                          for c in range(old_consumers))
    return {c: {"done": {lang: max(0, -(-(k - c) // consumers)) for lang, k in start.items()},
                "rng": np.random.default_rng([spec.seed, c, 1 + sum(start.values())]).bit_generator.state}
            for c in range(consumers)}
