"""What fine-tuning reads before it trains: the vocabulary, the label check against it, the CTC-feasibility filter.

The vocabulary comes, by precedence, from a `vocab` JSON, the `--init` checkpoint's CTC head, or the training
labels; utterances with an empty label, or a label longer than the model's frame count, are dropped and counted
(text/labels.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlsr.data.index_cache import open_manifest
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import XlsrError
from xlsr.interop.init_model import InitModel
from xlsr.model import Wav2Vec2Config
from xlsr.text.labels import FilterReport, build_vocabulary, labels_of, learnable
from xlsr.text.normalize import unnormalized_signs
from xlsr.text.vocab import Vocabulary, format_counts
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.shard_finetune import shard_train_source, symbol_utterances

log = logging.getLogger(__name__)


@dataclass
class FinetuneData:
    """The run's vocabulary and the utterances it trains and validates on, after filtering."""

    vocab: Vocabulary
    keep_head: bool  # the --init CTC head matches `vocab` and is kept
    train_utts: UtteranceIndex
    dev_utts: dict[str, UtteranceIndex]  # per language
    filter_reports: dict[str, FilterReport]  # per training manifest
    shards: tuple[Path, str] | None = None  # (shard folder, split) streamed instead of train_utts (train/shard_finetune.py)

    def report(self) -> dict:
        """What was read and dropped, for RUN/data_report.json."""
        return {"filtered": {p: r.to_dict() for p, r in self.filter_reports.items()},
                "vocab_size": len(self.vocab.tokens), "train_utterances": len(self.train_utts),
                "dev_utterances": {k: len(v) for k, v in self.dev_utts.items()}}


def read_finetune_data(cfg: FinetuneConfig, init: InitModel, model_config: Wav2Vec2Config) -> FinetuneData:
    """Read the manifests, choose the vocabulary, check the labels against it, drop what CTC cannot learn."""
    shards = shard_train_source(cfg.train)
    # utterance indexes (data/utterance_index.py): built once per manifest, memory-mapped, shared by the workers
    train = {p: open_manifest(p, max_bad_share=cfg.max_bad_share) for p in cfg.train} if shards is None else \
        {cfg.train[0]: symbol_utterances(*shards, cfg.labels)}  # a shard folder: its labels' symbols from the index
    dev = {p: open_manifest(p, max_bad_share=cfg.max_bad_share) for p in cfg.dev}
    vocab, keep_head = choose_vocabulary(cfg, init, train)
    check_oov(cfg, vocab, train, source=cfg.vocab or init.source, keep_head=keep_head)
    if cfg.labels == "chars" and (signs := unnormalized_signs(vocab.tokens)):
        log.warning("the character vocabulary (%d symbols) holds %s: each is an output the model must learn, "
                    "and a common cause of a model that predicts only blanks; normalize the transcripts first "
                    "(xlsr data normalize-text --data DIR --out DIR_NORM) and score with xlsr evaluate "
                    "--normalize-text", len(vocab), signs)
    if shards is not None:
        train = {}  # filtered as they stream by (ShardLabeler)

    kept, reports = {}, {}
    for path, utts in train.items():
        kept[path], reports[path] = _filtered(utts, vocab, cfg.labels, model_config.num_frames, path)
    train_utts = UtteranceIndex.concat(list(kept.values()))
    if not len(train_utts) and shards is None:
        raise XlsrError(f"{', '.join(cfg.train)}: no usable training utterance (all labels empty or "
                        f"longer than their audio)")
    dev_utts = UtteranceIndex.concat([_filtered(utts, vocab, cfg.labels, model_config.num_frames, path)[0]
                                      for path, utts in dev.items()]).by_language()
    return FinetuneData(vocab, keep_head, train_utts, dev_utts, reports, shards)


def _filtered(utts: UtteranceIndex, vocab: Vocabulary, labels: str, frames: Callable[[int], int],
              path: str) -> tuple[UtteranceIndex, FilterReport]:
    keep, report = learnable(utts, vocab, labels, frames)
    if report.kept < report.total:
        log.warning("%s", report.summary(path))
    return utts.subset(np.flatnonzero(keep)), report


def choose_vocabulary(cfg: FinetuneConfig, init: InitModel, train: dict[str, Sequence]) -> tuple[Vocabulary, bool]:
    """(vocabulary, keep the init head?) by precedence: --vocab file, the init's CTC vocab, the labels."""
    if cfg.vocab:  # a vocabulary of the labels it is given for
        return Vocabulary.from_json(cfg.vocab, kind=cfg.labels), False
    if init.vocab_tokens and not cfg.new_head:
        if init.labels and init.labels != cfg.labels:
            raise XlsrError(f"{init.source}: its vocabulary is for {init.labels} but --labels is "
                            f"{cfg.labels}; pass --new-head to train a new head")
        return Vocabulary(list(init.vocab_tokens), kind=cfg.labels), True
    return build_vocabulary(train, cfg.labels), False


def check_oov(cfg: FinetuneConfig, vocab: Vocabulary, train: dict[str, Sequence], *, source: str,
              keep_head: bool) -> None:
    """Symbols outside a vocabulary that did not come from these labels: error (or warn) with counts."""
    for path, utts in train.items():
        report = vocab.oov_report([text for text in labels_of(utts, cfg.labels) if text])
        if not report:
            continue
        message = (f"{path}: {sum(report.values())} label symbols are not in the vocabulary of {source} "
                   f"({format_counts(report, limit=8)})")
        if cfg.oov == "error":
            hint = "; pass --new-head to build a new head from these labels" if keep_head else \
                "; use oov=unk to map them to <unk>"
            raise XlsrError(message + hint)
        log.warning("%s; mapped to <unk>", message)

