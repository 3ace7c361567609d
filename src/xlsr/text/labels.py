"""CTC training labels: the manifest field that holds them, the vocabulary built from them, and the
utterances CTC cannot learn from (an empty label, or a label needing more frames than the audio gives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary

# --labels value -> the manifest field (data/manifest.py::Utterance) that holds that kind of label.
LABEL_FIELD = {"phones": "phones", "chars": "text"}


def label_of(utt, labels: str) -> str:
    """The label string of an utterance for `labels` ("phones" or "chars"), '' when absent."""
    return (getattr(utt, LABEL_FIELD[labels]) or "").strip()


def build_vocabulary(utts_by_manifest: dict[str, list], labels: str) -> Vocabulary:
    """The union of the per-manifest vocabularies built from their labels (blank 0, <unk> 1)."""
    vocabs = []
    for path, utts in utts_by_manifest.items():
        texts = [label_of(u, labels) for u in utts if label_of(u, labels)]
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


def filter_utterances(utts: list, vocab: Vocabulary, labels: str,
                      num_frames: Callable[[int], int]) -> tuple[list, FilterReport]:
    """Drop utterances CTC cannot learn from: empty labels, labels longer than the audio's frames.

    `num_frames(num_samples)` is the model's frame count for an utterance of that many samples.
    """
    keep, report = learnable(utts, vocab, labels, num_frames)
    return [u for u, k in zip(utts, keep) if k], report


def learnable(utts: Iterable, vocab: Vocabulary, labels: str,
              num_frames: Callable[[int], int]) -> tuple[list[bool], FilterReport]:
    """Per utterance, whether CTC can learn from it (`filter_utterances`'s test), and what was dropped."""
    report = FilterReport()
    keep = []
    for u in utts:
        report.total += 1
        text = label_of(u, labels)
        ids = list(vocab.encode(text)) if text else []
        dropped = report.empty_label if not ids else \
            report.label_too_long if ctc_min_frames(ids) > num_frames(u.num_samples) else None
        if dropped is not None:
            dropped.append(u.id or u.audio)
        keep.append(dropped is None)
    return keep, report
