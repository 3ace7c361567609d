"""Fine-tuning from a shard folder (`--train SHARDS/<split>`): the vocabulary from the index, labels in the stream.

The index lists the label symbols of every shard (data/shard_index.py), so the vocabulary is built without reading
a tar: one pseudo-utterance per symbol goes through the same `choose_vocabulary`/`check_oov` as manifest labels,
and the index's counts of the symbols (`symbol_counts`) stand in for the labels where `check_oov` counts the
symbols outside the vocabulary. The characters NFC respells in the labels (`respelled_symbols`) decide, as the
labels would, whether a loose accent in a character vocabulary is a sign of NFD spellings. An index written before
xlsr recorded these has neither: each symbol counts once, and the vocabulary alone decides. The filters that the
manifest path applies before training (an empty label, a label needing more frames than the audio gives) are
applied to each utterance as it streams by (`ShardLabeler`).
"""

from __future__ import annotations

from collections import Counter
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


def symbol_utterances(root: Path, split: str, labels: str) -> list[Utterance]:
    """One pseudo-utterance per label symbol the index lists for `split`: the input of the vocabulary choice."""
    index = read_index(root)
    symbols = sorted({sym for s in index.of_split(split) for sym in s.symbols.get(labels, [])})
    if not symbols:
        raise XlsrError(f"{index.path}: the {split} shards hold no {LABEL_FIELD[labels]!r} labels (--labels {labels})")
    field = LABEL_FIELD[labels]
    return [Utterance(audio=str(index.path), num_samples=1, lang="", **{field: sym}) for sym in symbols]


def symbol_counts(root: Path, split: str, labels: str) -> dict[str, int] | None:
    """How often each label symbol occurs in the labels of `split`, summed over its shards; None when a shard's
    entry has no counts (an index written before xlsr counted them)."""
    total: Counter[str] = Counter()
    for s in read_index(root).of_split(split):
        if s.symbol_counts is None:
            return None
        total.update(s.symbol_counts.get(labels, {}))
    return dict(total)


def respelled_symbols(root: Path, split: str) -> set[str] | None:
    """The characters NFC respells somewhere in the `text` labels of `split` (text/normalize.py's `nfc_respelled`,
    over its shards); None when a shard's entry does not say (an index written before xlsr recorded them)."""
    found: set[str] = set()
    for s in read_index(root).of_split(split):
        if s.nfc_respelled is None:
            return None
        found.update(s.nfc_respelled)
    return found


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
