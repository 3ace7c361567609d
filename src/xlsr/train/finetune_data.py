"""What fine-tuning reads before it trains: the vocabulary, the label check against it, the CTC-feasibility filter.

The vocabulary comes, by precedence, from a `vocab` JSON, the `--init` checkpoint's CTC head, or the training
labels; utterances with an empty label, or a label longer than the model's frame count, are dropped and counted
(text/labels.py), in the training and the dev manifests. Labels that write a reserved token (`<blank>`, `<unk>`) are
refused; dev label symbols outside the vocabulary are a warning. Training utterances longer than the batch limit
are skipped by the loader, dev ones are validated all the same (data/batching.py), each whole and alone in its
batch when longer than max_tokens, up to DEV_LENGTH_FACTOR × max_tokens: a longer one (an uncut recording) is left out
of validation with a warning naming it, since one forward pass over it would take many times a training step's
memory (and CTC's lattice grows with its frames times its label). All three counts are in the report.
A dev language with more unreadable audio files (by their headers) than `max_bad_share` is refused before training,
not at its first validation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlsr.data.audio import audio_num_samples
from xlsr.data.batching import length_limit
from xlsr.data.index_cache import open_manifest
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import AudioError, XlsrError, listing
from xlsr.interop.init_model import InitModel
from xlsr.model import Wav2Vec2Config
from xlsr.rates import SAMPLE_RATE
from xlsr.text.labels import (
    LABEL_FIELD,
    FilterReport,
    build_vocabulary,
    labels_of,
    learnable,
    reserved_symbol,
)
from xlsr.text.normalize import unnormalized_signs
from xlsr.text.vocab import Vocabulary, format_counts
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.shard_finetune import ShardLabels, shard_labels, shard_train_source

log = logging.getLogger(__name__)

# Validation has no gradient: a no-grad forward pass costs about a fifth of a training step's memory per sample
# (base: 1.6 GB for 100 s against 0.85 GB for a 10-s training batch; tiny about half), so a dev utterance of a few
# times max_tokens still fits where training does. An hour-long recording does not (tens of GB at base).
DEV_LENGTH_FACTOR = 4


@dataclass
class FinetuneData:
    """The run's vocabulary and the utterances it trains and validates on, after filtering."""

    vocab: Vocabulary
    keep_head: bool  # the --init CTC head matches `vocab` and is kept
    train_utts: UtteranceIndex
    dev_utts: dict[str, UtteranceIndex]  # per language
    filter_reports: dict[str, FilterReport]  # per training manifest
    shards: tuple[Path, str] | None = None  # (shard folder, split) streamed instead of train_utts (train/shard_finetune.py)
    dev_reports: dict[str, FilterReport] = field(default_factory=dict)  # per dev manifest
    oov: dict[str, dict[str, int]] = field(default_factory=dict)  # per manifest: label symbols outside the vocabulary
    # per manifest: utterances longer than the batch limit (`limit` samples); training skips them, dev validates them
    too_long: dict[str, dict[str, int]] = field(default_factory=dict)  # {"train"/"dev": {manifest: count}}
    limit: int = 0
    dev_manifests: dict[str, list[str]] = field(default_factory=dict)  # per language: the dev manifests holding it
    # the shard folders among `oov` whose index counts no symbols (written before xlsr counted them): 1 per symbol
    oov_uncounted: list[str] = field(default_factory=list)
    # languages trained on without a dev set, and dev languages not trained on (`check_dev_languages`)
    unmatched_languages: dict[str, list[str]] = field(default_factory=dict)

    def report(self) -> dict:
        """What was read and dropped, for RUN/data_report.json."""
        skipped = sum(self.too_long.get("train", {}).values())
        return {"filtered": {p: r.to_dict() for p, r in self.filter_reports.items()},
                "dev_filtered": {p: r.to_dict() for p, r in self.dev_reports.items()},
                "longer_than_limit": {"limit_samples": self.limit, "train_skipped": self.too_long.get("train", {}),
                                      "dev_validated": self.too_long.get("dev", {}),
                                      **({"dev_skipped": self.too_long["dev_skipped"]}
                                         if self.too_long.get("dev_skipped") else {})},
                "oov": self.oov, "oov_uncounted": self.oov_uncounted, "vocab_size": len(self.vocab.tokens),
                "train_utterances": len(self.train_utts) - skipped,
                "dev_utterances": {k: len(v) for k, v in self.dev_utts.items()},
                **({"dev_languages": self.unmatched_languages} if any(self.unmatched_languages.values()) else {})}


def read_finetune_data(cfg: FinetuneConfig, init: InitModel, model_config: Wav2Vec2Config) -> FinetuneData:
    """Read the manifests, choose the vocabulary, check the labels against it, drop what CTC cannot learn."""
    shards = shard_train_source(cfg.train)
    # a shard folder: its labels' symbols, their counts and what NFC respells in them, from the index
    from_index = None if shards is None else shard_labels(*shards, cfg.labels)
    # utterance indexes (data/utterance_index.py): built once per manifest, memory-mapped, shared by the workers
    train = {p: open_manifest(p, max_bad_share=cfg.max_bad_share) for p in cfg.train} if shards is None else \
        {cfg.train[0]: from_index.utterances}
    dev = {p: open_manifest(p, max_bad_share=cfg.max_bad_share) for p in cfg.dev}
    vocab, keep_head = choose_vocabulary(cfg, init, train)
    # a shard folder's pseudo-utterances hold each symbol once: its index says how the labels hold them
    indexed = None if from_index is None else {cfg.train[0]: from_index}
    oov = check_oov(cfg, vocab, train, source=cfg.vocab or init.source, keep_head=keep_head, shards=indexed)
    uncounted = [path for path, index in (indexed or {}).items() if index.counts is None and path in oov]
    oov.update(check_dev_labels(cfg, vocab, dev))
    # the training labels tell a loose accent of NFC text (Yoruba's on ẹ) from an NFD spelling; they are read only
    # when the vocabulary holds a mark both loose and precomposed. A shard folder lists, in place of its labels, the
    # characters NFC respells in them (an index without that list: the vocabulary alone decides)
    texts = None if shards is not None else (t for utts in train.values() for t in labels_of(utts, cfg.labels))
    respelled = from_index.respelled if from_index is not None and cfg.labels == "chars" else None
    if cfg.labels == "chars" and (signs := unnormalized_signs(vocab.tokens, texts, respelled=respelled)):
        log.warning("the character vocabulary (%d symbols) holds %s: each is an output the model must learn, "
                    "and a common cause of a model that predicts only blanks; normalize the transcripts first "
                    "(xlsr data normalize-text --data DIR --out DIR_NORM) and score with xlsr evaluate "
                    "--normalize-text", len(vocab), signs)
        if shards is not None and respelled is None and signs != unnormalized_signs(vocab.tokens, respelled=set()):
            log.warning("%s: its index was written before xlsr recorded what NFC respells in the labels: a combining "
                        "mark named above may be a loose accent of NFC text (Yoruba's on ẹ); `xlsr data shard` into "
                        "a new folder records it", shards[0])
    if shards is not None:
        train = {}  # filtered as they stream by (ShardLabeler)

    kept, reports = {}, {}
    for path, utts in train.items():
        kept[path], reports[path] = _filtered(utts, vocab, cfg.labels, model_config.num_frames, path)
    train_utts = UtteranceIndex.concat(list(kept.values()))
    if not len(train_utts) and shards is None:
        raise XlsrError(f"{', '.join(cfg.train)}: no usable training utterance (all labels empty or "
                        f"longer than their audio)")
    dev_kept, dev_reports, dev_too_long = {}, {}, {}
    for path, utts in dev.items():
        dev_kept[path], dev_reports[path] = _filtered(utts, vocab, cfg.labels, model_config.num_frames, path)
        dev_kept[path], dev_too_long[path] = _within_dev_length(dev_kept[path], cfg.max_tokens, path)
    dev_utts = UtteranceIndex.concat(list(dev_kept.values()))
    if cfg.dev and not len(dev_utts):
        longer = sum(dev_too_long.values())
        also = f"; {longer} longer than {DEV_LENGTH_FACTOR} × max_tokens" if longer else ""
        raise XlsrError(f"dev: no utterance is left to validate on "
                        f"({'; '.join(r.summary(p) for p, r in dev_reports.items())}{also})")
    check_dev_audio(dev_utts, cfg.max_bad_share)
    limit = length_limit(cfg.max_tokens, cfg.max_sample_size)
    too_long = {"train": _longer_than(kept, limit), "dev": _longer_than(dev_kept, limit),
                "dev_skipped": {p: n for p, n in dev_too_long.items() if n}}
    if shards is None and sum(too_long["train"].values()) == len(train_utts):
        raise XlsrError(f"{', '.join(cfg.train)}: every usable training utterance is longer than {limit} samples "
                        f"(max_tokens, or max_sample_size when smaller); raise --max-tokens")
    present = {p: {utts.langs[k] for k in np.unique(utts.lang_codes)} for p, utts in dev_kept.items()}
    dev_manifests = {lang: [p for p in dev_kept if lang in present[p]] for lang in dev_utts.langs}
    dev_by_language = dev_utts.by_language()
    unmatched = {}
    if cfg.dev:
        trained = _languages(kept.values()) if from_index is None else from_index.languages
        unmatched = check_dev_languages(trained, set(dev_by_language), cfg.labels)
    return FinetuneData(vocab, keep_head, train_utts, dev_by_language, reports, shards, dev_reports, oov,
                        too_long, limit, dev_manifests, oov_uncounted=uncounted, unmatched_languages=unmatched)


def _languages(parts) -> set[str]:
    """The languages that have at least one utterance in `parts` (UtteranceIndex objects)."""
    return {utts.langs[k] for utts in parts for k in np.unique(utts.lang_codes)}


def check_dev_languages(trained: set[str], validated: set[str], labels: str) -> dict[str, list[str]]:
    """Warn about training languages with no dev utterance (the dev error rate that picks checkpoints/best leaves
    them out) and dev languages with no training utterance (theirs counts in it); returns both, sorted."""
    metric = "PER" if labels == "phones" else "CER"
    no_dev, untrained = sorted(trained - validated), sorted(validated - trained)
    if no_dev:
        log.warning("dev: no dev utterance of training language(s) %s: the dev %s that picks checkpoints/best "
                    "leaves them out; give a dev manifest of each in --dev", listing([repr(x) for x in no_dev]), metric)
    if untrained:
        log.warning("dev: language(s) %s have dev utterances but no training utterance; their %s counts in the dev "
                    "%s that picks checkpoints/best", listing([repr(x) for x in untrained]), metric, metric)
    return {"trained_not_validated": no_dev, "validated_not_trained": untrained}


def check_dev_audio(dev_utts: UtteranceIndex, max_bad_share: float) -> None:
    """XlsrError naming the first manifest line, when more dev audio files of a language than `max_bad_share` (the
    share its validation loader tolerates) have no readable header. Headers only: cheap next to one validation."""
    for lang, utts in dev_utts.by_language().items():
        bad = []
        for i in range(len(utts)):
            try:
                audio_num_samples(utts.audio(i))
            except AudioError as exc:
                bad.append(f"{utts.where(i)}: {exc}")
        if len(bad) > max_bad_share * len(utts):
            raise XlsrError(f"dev set {lang!r}: {len(bad)} of {len(utts)} audio files cannot be read, more than "
                            f"max_bad_share={max_bad_share:g} (first: {bad[0]})")
        if bad:
            log.warning("dev set %r: %d of %d audio files cannot be read; validation skips them (first: %s)",
                        lang, len(bad), len(utts), bad[0])


def _longer_than(utts_by_manifest: dict[str, UtteranceIndex], limit: int) -> dict[str, int]:
    """Per manifest, its utterances longer than `limit` samples (those that have any)."""
    counts = {path: int(np.count_nonzero(utts.num_samples > limit)) for path, utts in utts_by_manifest.items()}
    return {path: n for path, n in counts.items() if n}


def _within_dev_length(utts: UtteranceIndex, max_tokens: int, path: str) -> tuple[UtteranceIndex, int]:
    """(`utts` without those longer than DEV_LENGTH_FACTOR × max_tokens, how many were left out), with a warning
    naming the longest: validation would take each whole, in one forward pass."""
    bound = DEV_LENGTH_FACTOR * max_tokens
    over = np.flatnonzero(utts.num_samples > bound)
    if not len(over):
        return utts, 0
    longest = int(over[np.argmax(utts.num_samples[over])])
    log.warning("%s: %d dev utterance(s) longer than %d samples (%g s: %d × max_tokens) left out of validation, which "
                "takes an utterance whole in one forward pass (the longest: %s, %.1f s); cut such recordings into "
                "utterances, or raise --max-tokens", path, len(over), bound, bound / SAMPLE_RATE, DEV_LENGTH_FACTOR,
                utts.where(longest), utts.num_samples[longest] / SAMPLE_RATE)
    return utts.subset(np.flatnonzero(utts.num_samples <= bound)), len(over)


def _filtered(utts: UtteranceIndex, vocab: Vocabulary, labels: str, frames: Callable[[int], int],
              path: str) -> tuple[UtteranceIndex, FilterReport]:
    keep, report = learnable(utts, vocab, labels, frames)
    if report.kept < report.total:
        log.warning("%s", report.summary(path))
    return utts.subset(np.flatnonzero(keep)), report


def choose_vocabulary(cfg: FinetuneConfig, init: InitModel, train: dict[str, Sequence]) -> tuple[Vocabulary, bool]:
    """(vocabulary, keep the init head?) by precedence: --vocab file (the init head kept when it holds the init's
    tokens), the init's CTC vocab, the labels."""
    if cfg.vocab:  # a vocabulary of the labels it is given for
        vocab = Vocabulary.from_json(cfg.vocab, kind=cfg.labels)
        return vocab, _serves_init_head(cfg, init, vocab)
    if init.vocab_tokens and not cfg.new_head:
        if init.labels and init.labels != cfg.labels:
            raise XlsrError(f"{init.source}: its vocabulary is for {init.labels} but --labels is "
                            f"{cfg.labels}; pass --new-head true to train a new head")
        return Vocabulary(list(init.vocab_tokens), kind=cfg.labels), True
    return build_vocabulary(train, cfg.labels), False


def _serves_init_head(cfg: FinetuneConfig, init: InitModel, vocab: Vocabulary) -> bool:
    """Whether the --init CTC head is kept for a --vocab file: the file holds the init's tokens in their order (and
    no --new-head). Otherwise a new head is made, and the log says so."""
    if not init.vocab_tokens:
        return False  # no head to keep
    if cfg.new_head:
        log.info("%s: --new-head: a new CTC head is made for %s", init.source, cfg.vocab)
        return False
    if list(init.vocab_tokens) == vocab.tokens and (not init.labels or init.labels == cfg.labels):
        return True
    log.warning("%s: its tokens are not those of %s (in their order, for %s): a new CTC head is made",
                cfg.vocab, init.source, init.labels or cfg.labels)
    return False


def check_oov(cfg: FinetuneConfig, vocab: Vocabulary, train: dict[str, Sequence], *, source: str,
              keep_head: bool, shards: dict[str, ShardLabels] | None = None) -> dict[str, dict[str, int]]:
    """Symbols outside a vocabulary that did not come from these labels: error (or warn) with counts; returns them
    per manifest. A label that writes a reserved token is an error. `shards`: for a shard folder of `train` (its
    utterances one per symbol), what its index says of its labels, which finds the symbols outside as its labels
    would (`ShardLabels.oov_report`); when its index does not count them, each is counted once, and the message
    says that the counts are unknown."""
    found = {}
    for path, utts in train.items():
        check_reserved(path, utts, cfg.labels)
        index = (shards or {}).get(path)
        report = vocab.oov_report([text for text in labels_of(utts, cfg.labels) if text]) if index is None \
            else index.oov_report(vocab)
        if not report:
            continue
        found[path] = report
        if index is not None and index.counts is None:
            message = (f"{path}: {len(report)} distinct label symbols are not in the vocabulary of {source} "
                       f"({listing([repr(s) for s in report], 8)}; how often each occurs is unknown: its index was "
                       f"written before xlsr counted label symbols)")
        else:
            message = (f"{path}: {sum(report.values())} label symbols are not in the vocabulary of {source} "
                       f"({format_counts(report, limit=8)})")
        if index is not None and index.runs is None:
            message += ("; its index was written before xlsr recorded the letters with their marks, so each "
                        "character was judged alone (`xlsr data shard` into a new folder records them)")
        if cfg.oov == "error":
            hint = "; pass --new-head true to build a new head from these labels" if keep_head else \
                "; use oov=warn to map them to <unk> (oov=unk: without a warning)"
            raise XlsrError(message + hint)
        (log.warning if cfg.oov == "warn" else log.info)("%s; mapped to <unk>", message)  # unk: the user chose it
    return found


def check_dev_labels(cfg: FinetuneConfig, vocab: Vocabulary, dev: dict[str, Sequence]) -> dict[str, dict[str, int]]:
    """Dev labels against the vocabulary: a reserved token is an error; symbols outside it a warning with counts
    (each an error in the dev error rate, whatever the model emits, as `xlsr evaluate` scores it), returned per manifest."""
    found = {}
    for path, utts in dev.items():
        check_reserved(path, utts, cfg.labels)
        report = vocab.oov_report([text for text in labels_of(utts, cfg.labels) if text])
        if report:
            log.warning("%s: %d dev label symbols are not in the vocabulary (%s); each is an error in the dev error "
                        "rate, as xlsr evaluate scores it",
                        path, sum(report.values()), format_counts(report, limit=8))
            found[path] = report
    return found


def check_reserved(path: str, utts: Sequence, labels: str) -> None:
    """XlsrError naming the manifest line whose label writes `<blank>` or `<unk>` as a symbol."""
    found = reserved_symbol(utts, labels)
    if found is not None:
        row, symbol = found
        where = utts.where(row) if hasattr(utts, "where") else path
        raise XlsrError(f"{where}: the {LABEL_FIELD[labels]!r} label writes {symbol!r}, a token the vocabulary "
                        f"reserves (it would enter the CTC target as that token); remove it from the labels")

