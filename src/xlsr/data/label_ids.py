"""Fine-tuning labels as token ids, for a whole index at once: one flat int32 array and offsets, not a list per
utterance, so that the DataLoader workers share it."""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterator

import numpy as np

from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import XlsrError

log = logging.getLogger(__name__)

LABEL_FIELD = {"phones": "phones", "text": "text", "chars": "text"}  # label_field -> the manifest field


class LabelIds:
    """Token ids of utterance i: `ids[offsets[i]:offsets[i + 1]]`."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        self.ids, self.offsets = ids, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]


def encode_labels(utts: UtteranceIndex, vocab, label_field: str, oov: str = "error") -> LabelIds:
    """Label ids for every utterance via `vocab.encode`; XlsrError for a missing label or, with
    oov="error", symbols outside the vocabulary (needs `vocab.oov_report`)."""
    if label_field not in LABEL_FIELD:
        raise XlsrError(f"label field must be one of {', '.join(LABEL_FIELD)}, got {label_field!r}")
    field = LABEL_FIELD[label_field]
    for i in range(len(utts)):
        if not utts.label(i, field):
            raise XlsrError(f"{utts.where(i)}: utterance {utts.utterance_id(i)} has no {field!r} label")
    if oov != "unk" and hasattr(vocab, "oov_report"):
        report = vocab.oov_report(_labels(utts, field))
        if report:
            shown = ", ".join(f"{s!r}×{n}" for s, n in sorted(report.items(), key=lambda kv: -kv[1])[:8])
            message = f"{field} labels contain symbols outside the vocabulary: {shown}"
            if oov == "error":
                raise XlsrError(message)
            log.warning("%s (mapped to <unk>)", message)
    ids, ends = array("i"), array("q", [0])
    for label in _labels(utts, field):
        ids.extend(vocab.encode(label))
        ends.append(len(ids))
    return LabelIds(np.frombuffer(ids, dtype=np.int32) if ids else np.zeros(0, np.int32),
                    np.frombuffer(ends, dtype=np.int64))


def _labels(utts: UtteranceIndex, field: str) -> Iterator[str]:
    return (utts.label(i, field) for i in range(len(utts)))
