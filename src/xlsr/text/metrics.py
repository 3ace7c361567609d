"""Error rates from Levenshtein alignments: PER (phones), CER (characters) and WER (words).

Counts are kept per utterance and summed over a corpus (the rate is total errors / total reference
length, not a mean of per-utterance rates). The word boundary `|` is never counted in PER or CER
(pitfall 10: reporting PER with the boundary symbol inflates the numbers); spaces are not counted
in CER.

Reference and hypothesis are compared in Unicode NFC: spellings Unicode calls the same text (é typed as one code
point or as e and a combining accent; Hangul as syllables or as jamo; Arabic shadda and fatha in either order)
are equal. A character is a code point of that NFC form, as in jiwer and the fairseq and transformers recipes,
not a grapheme cluster: Hindi कि (ka and the vowel sign i) is two characters, Vietnamese ế and Korean 한 one each.
Nothing else is normalised here (case, punctuation: xlsr.text.normalize).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from xlsr.errors import XlsrError
from xlsr.text.vocab import UNK, WORD_BOUNDARY

UNITS = ("phone", "char", "word")


@dataclass(frozen=True)
class EditCounts:
    """Substitutions, deletions and insertions of one alignment (or a sum of them) and the ref length."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def hits(self) -> int:
        return self.ref_len - self.substitutions - self.deletions

    @property
    def rate(self) -> float:
        """errors / ref_len; 0 for an empty reference with no errors, inf with some."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref_len

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                          self.insertions + other.insertions, self.ref_len + other.ref_len)

    def to_dict(self) -> dict:
        return {"substitutions": self.substitutions, "deletions": self.deletions,
                "insertions": self.insertions, "ref_len": self.ref_len, "errors": self.errors,
                # errors against an empty reference have no finite rate; JSON has no Infinity (json.dumps writes
                # it, but jq and JSON.parse refuse the file), so it is null
                "rate": self.rate if self.ref_len else (None if self.errors else 0.0)}


def edit_ops(ref: Sequence, hyp: Sequence) -> EditCounts:
    """S/D/I of a minimum-edit alignment of `hyp` to `ref`.

    Among equally short alignments the one chosen matches jiwer/rapidfuzz (common prefix and
    suffix aligned first; backtrace from the end preferring deletion, substitution, insertion,
    then a hit), so S/D/I counts agree with the tools users compare against. Memory grows with len(hyp)
    only (two rows of the table), time with len(ref) * len(hyp); long hypotheses are done a row at a time in
    numpy (two 20,000-symbol sequences: ~9 s, against ~6 min cell by cell).
    """
    ref_len = len(ref)
    lo = 0
    while lo < len(ref) and lo < len(hyp) and ref[lo] == hyp[lo]:
        lo += 1
    ref, hyp = ref[lo:], hyp[lo:]
    while ref and hyp and ref[-1] == hyp[-1]:
        ref, hyp = ref[:-1], hyp[:-1]
    n, m = len(ref), len(hyp)
    base = n + m + 1
    if m >= _ROW_VECTOR_MIN and base ** 3 < 2 ** 63:
        subs, dels, ins = _edit_ops_rows(ref, hyp)
    else:
        subs, dels, ins = _edit_ops_loop(ref, hyp)
    return EditCounts(subs, dels, ins, ref_len)


# From this many hypothesis symbols on, a row of the table is computed with numpy (below that the per-call
# overhead of a dozen array operations costs more than the Python loop over the row).
_ROW_VECTOR_MIN = 80


def _edit_ops_loop(ref: Sequence, hyp: Sequence) -> tuple[int, int, int]:
    """(S, D, I) of the alignment `edit_ops` picks, one cell at a time (rows of any length; Python ints)."""
    n, m = len(ref), len(hyp)
    # Two rows, not the whole (n+1) x (m+1) table: one long recording's transcript (tens of thousands of
    # characters) would need tens of GiB for it. The alignment a backtrace over the whole table picks is found
    # without it: from cell (i, j) that backtrace steps to one neighbour (deletion first, then substitution, then
    # insertion, then a hit, among those on a shortest path), chosen from that cell's and its neighbours' costs
    # alone, and then goes on as from that neighbour. So each cell can carry the S/D/I counts of the backtrace
    # from it, taken from the neighbour it steps to, and cell (n, m) holds the counts of the whole alignment.
    # The three counts are packed in one int (base n + m + 1, above any count) to keep the inner loop cheap.
    base = n + m + 1
    one_sub, one_del, one_ins = base * base, base, 1
    prev_cost, prev_ops = list(range(m + 1)), list(range(m + 1))  # row 0: j insertions
    for i in range(1, n + 1):
        r = ref[i - 1]
        cost, ops = [i] + [0] * m, [i * one_del] + [0] * m  # column 0: i deletions
        for j in range(1, m + 1):
            diag, up, left = prev_cost[j - 1], prev_cost[j], cost[j - 1]
            differ = r != hyp[j - 1]
            here = min(diag + differ, up + 1, left + 1)
            cost[j] = here
            if here == up + 1:
                ops[j] = prev_ops[j] + one_del
            elif differ and here == diag + 1:
                ops[j] = prev_ops[j - 1] + one_sub
            elif here == left + 1:
                ops[j] = ops[j - 1] + one_ins
            else:  # a hit
                ops[j] = prev_ops[j - 1]
        prev_cost, prev_ops = cost, ops
    packed = prev_ops[m]
    return packed // one_sub, packed // one_del % base, packed % base


def _edit_ops_rows(ref: Sequence, hyp: Sequence) -> tuple[int, int, int]:
    """The same (S, D, I) as `_edit_ops_loop`, a whole row of the table at a time.

    Within a row only the insertion move depends on the cell to its left. Without it a cell's cost is
    t[j] = min(diagonal + differ, up + 1); with it cost[j] = min over k <= j of t[k] + (j - k), a running
    minimum of t[k] - k. The move each cell's backtrace takes is then decided from the finished costs in the
    same order as the loop, and a run of insertions carries the packed counts of the cell where it starts plus
    one insertion per step.
    """
    ids: dict = {}
    ref_ids = np.array([ids.setdefault(x, len(ids)) for x in ref], dtype=np.int64)
    hyp_ids = np.array([ids.setdefault(x, len(ids)) for x in hyp], dtype=np.int64)
    n, m = len(ref_ids), len(hyp_ids)
    base = n + m + 1
    one_sub, one_del, one_ins = base * base, base, 1
    cols = np.arange(m + 1, dtype=np.int64)
    prev_cost, prev_ops = cols.copy(), cols.copy()  # row 0: j insertions
    for i in range(1, n + 1):
        differ = hyp_ids != ref_ids[i - 1]
        diag, up = prev_cost[:-1], prev_cost[1:]
        t = np.empty(m + 1, dtype=np.int64)
        t[0] = i  # column 0: i deletions
        np.minimum(diag + differ, up + 1, out=t[1:])
        cost = np.minimum.accumulate(t - cols) + cols
        here = cost[1:]
        is_del = here == up + 1
        is_sub = ~is_del & differ & (here == diag + 1)
        is_ins = ~is_del & ~is_sub & (here == cost[:-1] + 1)
        # the counts of each cell's own move (deletion, substitution, a hit), insertions filled in below
        ops = np.empty(m + 1, dtype=np.int64)
        ops[0] = i * one_del
        ops[1:] = np.where(is_del, prev_ops[1:] + one_del, prev_ops[:-1] + is_sub * one_sub)
        start = np.where(np.concatenate(([False], is_ins)), 0, cols)
        np.maximum.accumulate(start, out=start)  # where each run of insertions starts
        ops = ops[start] + (cols - start) * one_ins
        prev_cost, prev_ops = cost, ops
    packed = int(prev_ops[m])
    return packed // one_sub, packed // one_del % base, packed % base


_CHARS = re.compile(re.escape(UNK) + r"|\S")


def units(text: str, unit: str) -> list[str]:
    """The symbols scored for `unit` in `text`'s NFC form: phone tokens or characters without `|`/spaces, or words."""
    text = unicodedata.normalize("NFC", text)
    if unit == "phone":
        return [t for t in text.split() if t != WORD_BOUNDARY]
    if unit == "char":  # a character model's <unk> is one output, so one symbol
        return [c for c in _CHARS.findall(text) if c != WORD_BOUNDARY]
    if unit == "word":
        # A char-model transcript may still carry `|` for spaces; it separates words either way.
        return text.replace(WORD_BOUNDARY, " ").split()
    raise XlsrError(f"metric unit: {unit!r} is not one of {', '.join(UNITS)}")


def utterance_counts(ref: str, hyp: str, unit: str) -> EditCounts:
    """Edit counts of one reference/hypothesis text pair in `unit`s."""
    return edit_ops(units(ref, unit), units(hyp, unit))


def corpus_counts(refs: Sequence[str], hyps: Sequence[str], unit: str) -> EditCounts:
    """Edit counts summed over a corpus of reference/hypothesis texts."""
    if len(refs) != len(hyps):
        raise XlsrError(f"error rate: {len(refs)} references but {len(hyps)} hypotheses")
    return sum((utterance_counts(r, h, unit) for r, h in zip(refs, hyps)), EditCounts())


def error_rate(refs: Sequence[str] | str, hyps: Sequence[str] | str, unit: str = "word") -> float:
    """Corpus error rate (total errors / total reference units) of texts in `unit`s."""
    if isinstance(refs, str) and isinstance(hyps, str):
        refs, hyps = [refs], [hyps]
    return corpus_counts(refs, hyps, unit).rate


def per(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
    """Phone error rate over space-separated phone tokens, `|` excluded."""
    return error_rate(refs, hyps, "phone")


def cer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
    """Character error rate, spaces and `|` excluded."""
    return error_rate(refs, hyps, "char")


def wer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
    """Word error rate over whitespace-separated words (`|` also separates words)."""
    return error_rate(refs, hyps, "word")


def grouped_counts(refs: Sequence[str], hyps: Sequence[str], groups: Iterable[str], unit: str
                   ) -> dict[str, EditCounts]:
    """Edit counts per group (e.g. language), the groups only: the total is corpus_counts (or the sum of
    these). It is not under a key of its own here, since any name for it may be a group's: "all" is a
    language code (ISO 639-3), and its counts would be added to the total twice."""
    groups = list(groups)
    if not (len(refs) == len(hyps) == len(groups)):
        raise XlsrError(f"error rate: {len(refs)} references, {len(hyps)} hypotheses, {len(groups)} groups")
    out: dict[str, EditCounts] = {}
    for r, h, g in zip(refs, hyps, groups):
        out[g] = out.get(g, EditCounts()) + utterance_counts(r, h, unit)
    return out
