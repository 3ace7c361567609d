"""Text side of CTC: vocabularies (phones, characters) and error rates (PER, CER, WER)."""

from xlsr.text.metrics import EditCounts, cer, corpus_counts, edit_ops, error_rate, grouped_counts, per, wer
from xlsr.text.vocab import BLANK, UNK, WORD_BOUNDARY, Vocabulary

__all__ = ["BLANK", "UNK", "WORD_BOUNDARY", "Vocabulary", "EditCounts", "edit_ops", "error_rate",
           "corpus_counts", "grouped_counts", "per", "cer", "wer"]
