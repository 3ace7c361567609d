"""CTC training labels: the manifest field that holds them, the vocabulary built from them, and the
utterances CTC cannot learn from (an empty label, or a label needing more frames than the audio gives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from xlsr.errors import XlsrError
from xlsr.text.vocab import SPECIAL_TOKENS, Vocabulary, tokenize

# --labels value -> the manifest field (data/manifest.py::Utterance) that holds that kind of label.
LABEL_FIELD = {"phones": "phones", "chars": "text"}


def label_of(utt, labels: str) -> str:
    """The label string of an utterance for `labels` ("phones" or "chars"), '' when absent."""
    return (getattr(utt, LABEL_FIELD[labels]) or "").strip()


def _columnar(utts: Sequence) -> bool:
    """Whether `utts` is data's UtteranceIndex (columns `labels(field)` and `num_samples`), told by duck typing:
    text sits below data and does not import it."""
    return callable(getattr(utts, "labels", None))


def labels_of(utts: Sequence, labels: str) -> Iterator[str]:
    """`label_of` each utterance in order; a columnar collection (data's UtteranceIndex, which has a
    `labels(field)` column reader) gives its label column without making objects."""
    name = LABEL_FIELD[labels]
    values = utts.labels(name) if _columnar(utts) else (getattr(u, name) for u in utts)
    return ((v or "").strip() for v in values)


def reserved_symbol(utts: Sequence, labels: str) -> tuple[int, str] | None:
    """(position, symbol) of the first label that writes a reserved token (`<blank>`, `<unk>`) as a symbol, else
    None. Encoded, such a symbol would be the blank's (or `<unk>`'s) id inside a CTC target."""
    for i, text in enumerate(labels_of(utts, labels)):
        if "<" in text:  # a substring test first: most labels hold no reserved token
            written = [s for s in tokenize(text, labels) if s in SPECIAL_TOKENS]
            if written:
                return i, written[0]
    return None


def frames_per_utterance(num_samples: Sequence[int], num_frames: Callable[[int], int]) -> np.ndarray:
    """`num_frames(n)` for each n of `num_samples`, called once per distinct length rather than once per utterance."""
    lengths, inverse = np.unique(np.asarray(num_samples, dtype=np.int64), return_inverse=True)
    frames = np.array([num_frames(n) for n in lengths.tolist()], dtype=np.int64)
    return frames[inverse.reshape(-1)]


def build_vocabulary(utts_by_manifest: dict[str, Sequence], labels: str) -> Vocabulary:
    """The union of the per-manifest vocabularies built from their labels (blank 0, <unk> 1)."""
    vocabs = []
    for path, utts in utts_by_manifest.items():
        texts = [text for text in labels_of(utts, labels) if text]
        if not texts:
            raise XlsrError(f"{path}: no utterance has a {LABEL_FIELD[labels]!r} label (--labels {labels})")
        vocabs.append(Vocabulary.build(texts, kind=labels))
    return vocabs[0] if len(vocabs) == 1 else Vocabulary.union(vocabs)


def ctc_min_frames(ids: Sequence[int]) -> int:
    """Fewest frames CTC needs for a target: its length plus one blank between each repeated pair."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


@dataclass
class FilterReport:
    """Utterances dropped before training, by reason (the first few ids of each kept for the message)."""

    total: int = 0
    empty_label: list[str] = field(default_factory=list)
    label_too_long: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.total - len(self.empty_label) - len(self.label_too_long)

    def summary(self, name: str) -> str:
        """One line: what was dropped from `name` and why."""
        parts = []
        if self.empty_label:
            parts.append(f"{len(self.empty_label)} with an empty label (e.g. {', '.join(self.empty_label[:3])})")
        if self.label_too_long:
            parts.append(f"{len(self.label_too_long)} whose label is longer than their frames "
                         f"(e.g. {', '.join(self.label_too_long[:3])})")
        return f"{name}: skipped {' and '.join(parts)}; {self.kept} of {self.total} kept"

    def to_dict(self) -> dict[str, int]:
        """The counts, for the run's data report."""
        return {"total": self.total, "kept": self.kept, "empty_label": len(self.empty_label),
                "label_too_long": len(self.label_too_long)}


def filter_utterances(utts: Sequence, vocab: Vocabulary, labels: str,
                      num_frames: Callable[[int], int]) -> tuple[list, FilterReport]:
    """Drop utterances CTC cannot learn from: empty labels, labels longer than the audio's frames.

    `num_frames(num_samples)` is the model's frame count for an utterance of that many samples.
    """
    keep, report = learnable(utts, vocab, labels, num_frames)
    return [u for u, k in zip(utts, keep) if k], report


def learnable(utts: Sequence, vocab: Vocabulary, labels: str,
              num_frames: Callable[[int], int]) -> tuple[np.ndarray, FilterReport]:
    """Per utterance, whether CTC can learn from it (`filter_utterances`'s test), and what was dropped."""
    num_samples = utts.num_samples if _columnar(utts) else [u.num_samples for u in utts]
    frames = frames_per_utterance(num_samples, num_frames).tolist()
    report = FilterReport(total=len(frames))
    keep = np.ones(len(frames), dtype=bool)
    for i, text in enumerate(labels_of(utts, labels)):
        ids = vocab.encode(text) if text else []
        dropped = report.empty_label if not ids else \
            report.label_too_long if ctc_min_frames(ids) > frames[i] else None
        if dropped is not None:
            u = utts[i]  # an object only for what is dropped, for its name
            dropped.append(u.id or u.audio)
            keep[i] = False
    return keep, report
