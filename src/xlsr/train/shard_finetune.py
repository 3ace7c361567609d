"""Fine-tuning from a shard folder (`--train SHARDS/<split>`): the vocabulary from the index, labels in the stream.

The index lists the label symbols of every shard (data/shard_index.py), so the vocabulary is built without reading
a tar: one pseudo-utterance per symbol goes through the same `choose_vocabulary`/`check_oov` as manifest labels,
and the index's counts of the symbols stand in for the labels where `check_oov` counts the
symbols outside the vocabulary. The characters NFC respells in the labels decide, as the
labels would, whether a loose accent in a character vocabulary is a sign of NFD spellings. An index written before
xlsr recorded these has neither: each symbol counts once, and the vocabulary alone decides. The filters that the
manifest path applies before training (an empty label, a label needing more frames than the audio gives) are
applied to each utterance as it streams by (`ShardLabeler`).
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

    utterances: list[Utterance]  # one pseudo-utterance per label symbol: the input of the vocabulary choice
    counts: dict[str, int] | None  # how often each symbol occurs; None: an index written before xlsr counted them
    respelled: set[str] | None  # what NFC respells in the `text` labels; None: an index that does not say


def shard_labels(root: Path, split: str, labels: str) -> ShardLabels:
    """The label symbols the index lists for `split`, their counts summed over its shards, and the characters NFC
    respells in its `text` labels (text/normalize.py's `nfc_respelled`)."""
    index = read_index(root)
    shards = index.of_split(split)
    symbols = sorted({sym for s in shards for sym in s.symbols.get(labels, [])})
    if not symbols:
        raise XlsrError(f"{index.path}: the {split} shards hold no {LABEL_FIELD[labels]!r} labels (--labels {labels})")
    field = LABEL_FIELD[labels]
    utterances = [Utterance(audio=str(index.path), num_samples=1, lang="", **{field: sym}) for sym in symbols]
    counts, respelled = Counter(), set()
    for s in shards:
        counts.update((s.symbol_counts or {}).get(labels, {}))
        respelled.update(s.nfc_respelled or ())
    # an entry written before xlsr recorded them: unknown for the split, not empty
    counted = all(s.symbol_counts is not None for s in shards)
    said = all(s.nfc_respelled is not None for s in shards)
    return ShardLabels(utterances, dict(counts) if counted else None, respelled if said else None)


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
