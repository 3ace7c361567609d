"""Fine-tuning from a shard folder (`--train SHARDS/<split>`): the vocabulary from the index, labels in the stream.

The index lists the label symbols of every shard (data/shard_index.py), so the vocabulary is built without reading
a tar: one pseudo-utterance per symbol goes through the same `choose_vocabulary`/`check_reserved` as manifest
labels. The symbols outside a given vocabulary are found as the vocabulary finds them in the labels
(`Vocabulary.oov_report`), in the pieces the index records with their counts: the runs of a character label that NFC
could join (a letter and its marks), which the vocabulary judges whole (e\u0301 is its token é), and each symbol
outside them. The characters NFC respells in the labels decide, as the labels would, whether a loose accent in a
character vocabulary is a sign of NFD spellings. An index written before xlsr recorded these has none of them: each
symbol counts once, and the vocabulary alone decides; one written before xlsr recorded the runs judges each
character alone. The filters that the manifest path applies before training (an empty label, a label needing more
frames than the audio gives) are applied to each utterance as it streams by (`ShardLabeler`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from xlsr.data.manifest import Utterance
from xlsr.data.shard_index import read_index, shard_source
from xlsr.errors import XlsrError
from xlsr.model.config import cnn_frames
from xlsr.text.labels import LABEL_FIELD, ctc_min_frames
from xlsr.text.vocab import Vocabulary


def shard_train_source(paths: list[str]) -> tuple[Path, str] | None:
    """(shard folder, split) when the training data is one shard folder or split folder; None for manifests."""
    sources = [shard_source(p) for p in paths]
    if not any(sources):
        return None
    if len(paths) > 1:
        raise XlsrError(f"train: {', '.join(paths)}: a shard folder cannot be mixed with other training data")
    root, split = sources[0]
    return root, split or "train"


@dataclass
class ShardLabels:
    """What the index of a shard split says of its labels, read once (module docstring)."""

    symbols: list[str]  # the label symbols, sorted
    utterances: list[Utterance]  # one pseudo-utterance per label symbol: the input of the vocabulary choice
    counts: dict[str, int] | None  # how often each symbol occurs; None: an index written before xlsr counted them
    respelled: set[str] | None  # what NFC respells in the `text` labels; None: an index that does not say
    # how often each run of two or more characters that NFC could join occurs in the `text` labels (phone labels
    # have none: a phone is judged alone); None: an index written before xlsr recorded them
    runs: dict[str, int] | None
    languages: set[str]  # the languages of the split's shards: what fine-tuning trains on (`check_dev_languages`)

    def oov_report(self, vocab: Vocabulary) -> dict[str, int]:
        """The label symbols outside `vocab` with how often they occur (1 each when the index does not count them),
        most frequent first: `vocab.oov_report` of each run and of each symbol outside the runs, times its count."""
        if self.counts is None:
            return vocab.oov_report(self.symbols)
        alone = Counter(self.counts)  # each symbol's occurrences outside the runs
        for run, n in (self.runs or {}).items():
            alone.subtract({s: k * n for s, k in Counter(run).items()})
        found: Counter[str] = Counter()
        for piece, n in {**{s: n for s, n in alone.items() if n > 0}, **(self.runs or {})}.items():
            for s, k in vocab.oov_report([piece]).items():
                found[s] += k * n
        return dict(found.most_common())


def shard_labels(root: Path, split: str, labels: str) -> ShardLabels:
    """The label symbols the index lists for `split`, their counts and (`text` labels) their runs that NFC could join
    summed over its shards, the characters NFC respells in its `text` labels (text/normalize.py's `nfc_respelled`),
    and its shards' languages."""
    index = read_index(root)
    shards = index.of_split(split)
    symbols = sorted({sym for s in shards for sym in s.symbols.get(labels, [])})
    if not symbols:
        raise XlsrError(f"{index.path}: the {split} shards hold no {LABEL_FIELD[labels]!r} labels (--labels {labels})")
    field = LABEL_FIELD[labels]
    utterances = [Utterance(audio=str(index.path), num_samples=1, lang="", **{field: sym}) for sym in symbols]
    counts, respelled, runs = Counter(), set(), Counter()
    for s in shards:
        counts.update((s.symbol_counts or {}).get(labels, {}))
        respelled.update(s.nfc_respelled or ())
        if labels == "chars":
            runs.update(s.char_runs or {})
    # an entry written before xlsr recorded them: unknown for the split, not empty
    counted = all(s.symbol_counts is not None for s in shards)
    said = all(s.nfc_respelled is not None for s in shards)
    joined = labels == "phones" or all(s.char_runs is not None for s in shards)
    return ShardLabels(symbols, utterances, dict(counts) if counted else None, respelled if said else None,
                       dict(runs) if joined else None, {s.lang for s in shards})


class ShardLabeler:
    """JSON fields of a streamed utterance -> its label ids, or None when CTC cannot learn from it."""

    def __init__(self, vocab: Vocabulary, labels: str, conv_layers) -> None:
        self.vocab, self.field, self.conv_layers = vocab, LABEL_FIELD[labels], [tuple(c) for c in conv_layers]

    def __call__(self, meta: dict) -> list[int] | None:
        label = (meta.get(self.field) or "").strip()
        ids = list(self.vocab.encode(label)) if label else []
        # plain integer arithmetic: a tensor op per CNN layer would cost ~50 µs per streamed utterance
        if not ids or ctc_min_frames(ids) > cnn_frames(int(meta["num_samples"]), self.conv_layers):
            return None
        return ids
