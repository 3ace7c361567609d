"""Evaluation: transcribe a manifest and score it per language (PER for phones; CER and WER for characters).

Counts are summed per language (rate = errors / reference units, not a mean of utterance rates), with
substitutions, deletions and insertions kept apart. The word boundary `|` is never counted in PER or
CER (text/metrics.py), and reference and hypothesis are compared in Unicode NFC (text/metrics.py). Utterances
without a reference label are skipped and counted; reference symbols the model cannot spell with its vocabulary
are reported with their counts (they can only be errors).

Given a PartialResults (`kept`), each transcript is kept on disk as soon as it is made and a recording it already
holds is not transcribed again: an evaluation stopped part way (Ctrl-C, a crash, a lost machine) resumes where it
was. What is kept is the transcripts, not the scores: they are scored anew on each run, so the scoring options
(labels, normalized text) may change between a stop and the rerun.
"""

from __future__ import annotations

import logging
import math
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S
from xlsr.data.index_cache import open_manifest
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.decode.partial_results import PartialResults
from xlsr.decode.transcribe import CTCModel, Decoder, Failure, transcribe_files
from xlsr.errors import XlsrError
from xlsr.text.bootstrap import rate_interval
from xlsr.text.labels import LABEL_FIELD, labels_of
from xlsr.text.metrics import EditCounts, utterance_counts
from xlsr.text.normalize import normalize_text
from xlsr.text.vocab import UNK, Vocabulary

log = logging.getLogger(__name__)

METRICS = {"phones": ("phone",), "chars": ("char", "word")}
METRIC_NAMES = {"phone": "PER", "char": "CER", "word": "WER"}


TOTAL_ROW = "total"  # the table's last row; not a language code (those are 2-3 letters, or tags like en-US)


@dataclass
class EvalReport:
    """Per-language edit counts per metric unit, their total over every language, and what could not be scored.

    The total is kept apart from the languages, not as one more language: any name for it may be a manifest's
    language ("all" is one, ISO 639-3 Allar), whose counts were then added to the total twice."""

    model: str
    labels: str
    counts: dict[str, dict[str, object]]  # lang -> unit -> EditCounts, the manifest's languages only
    utterances: dict[str, int]  # lang -> utterances scored (0: every one with a reference failed)
    failures: list[Failure] = field(default_factory=list)
    no_reference: list[str] = field(default_factory=list)  # utterance ids without a label
    oov: dict[str, int] = field(default_factory=dict)  # reference symbols outside the vocabulary
    hypotheses: list[dict] = field(default_factory=list)
    total: dict[str, EditCounts] | None = None  # unit -> EditCounts over every language (None: the sum of counts)
    total_utterances: int | None = None  # None: the sum over languages
    unspaced: list[str] = field(default_factory=list)  # languages written without spaces between words (their WER)
    # lang -> unit -> each scored utterance's (errors, reference units): the intervals' resampling
    per_utterance: dict[str, dict[str, list[tuple[int, int]]]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._intervals: dict = {}
        if self.total is None:  # every unit of the labels, even when no utterance was scored
            self.total = {u: sum((c[u] for c in self.counts.values() if u in c), EditCounts())
                          for u in METRICS[self.labels]}
        if self.total_utterances is None:
            self.total_utterances = sum(self.utterances.values())

    def rate(self, lang: str | None, unit: str) -> float:
        """Error rate of `unit` ("phone", "char", "word") over every language (`lang` None), or for `lang` (a
        language coded "all", ISO 639-3 Allar, is a language like any other); NaN where no utterance was scored
        (all failed): no errors counted over nothing is no 0 %."""
        if lang is None:
            return self.total[unit].rate if self.total_utterances else math.nan
        return self.counts[lang][unit].rate if self.utterances.get(lang, 0) else math.nan

    def interval(self, lang: str | None, unit: str) -> tuple[float, float] | None:
        """The 95% bootstrap interval of `unit`'s rate for `lang`, or over every language (None: each language
        resampled within itself, text/bootstrap.py); None with fewer than two utterances scored."""
        key = (lang, unit)
        if key not in self._intervals:
            langs = [lang] if lang is not None else list(self.per_utterance)
            pairs = [(lg, e, n) for lg in langs for e, n in self.per_utterance.get(lg, {}).get(unit, [])]
            self._intervals[key] = rate_interval([e for _, e, _ in pairs], [n for _, _, n in pairs],
                                                 [lg for lg, _, _ in pairs]) if pairs else None
        return self._intervals[key]

    def to_dict(self) -> dict:
        def metrics(lang: str | None, units: dict, scored: int) -> dict:
            # nothing scored: no rate (null), not the 0.0 of zero errors over zero reference units
            return {METRIC_NAMES[u].lower(): {**c.to_dict(), **({} if scored else {"rate": None}),
                                              "interval_95": _listed(self.interval(lang, u))}
                    for u, c in units.items()}

        return {
            "model": self.model, "labels": self.labels,
            "languages": {lang: {"utterances": self.utterances.get(lang, 0),
                                 **metrics(lang, units, self.utterances.get(lang, 0))}
                          for lang, units in self.counts.items()},
            "total": {"utterances": self.total_utterances, **metrics(None, self.total, self.total_utterances)},
            "failures": [{"audio": f.audio, "error": f.error} for f in self.failures],
            "no_reference": self.no_reference, "oov": self.oov,
            # the languages whose WER counts whole phrases (the note under the table)
            "unspaced": sorted(self.unspaced),
        }

    def table(self) -> str:
        """A fixed-width table: one row per language, then a rule and the total over every language."""
        units = METRICS[self.labels]
        head = ["language", "utts"] + [cell for u in units
                                       for cell in (METRIC_NAMES[u] + " %", "95%-CI", "S", "D", "I", "N")]

        def row(name: str, lang: str | None, n_utts: int, per_unit: dict) -> list[str]:
            cells = [name, str(n_utts)]
            for u in units:
                c = per_unit[u]
                rate = f"{100 * c.rate:.2f}" if n_utts else "-"  # nothing scored: no rate
                ci = self.interval(lang, u)
                cells += [rate, f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}" if ci else "-",
                          *map(str, (c.substitutions, c.deletions, c.insertions, c.ref_len))]
            return cells

        rows = [row(lang, lang, self.utterances.get(lang, 0), self.counts[lang]) for lang in sorted(self.counts)]
        total = row(TOTAL_ROW, None, self.total_utterances, self.total)
        head, *rows, total = fixed_width([head, *rows, total], [10, 5] + [7, 11, 6, 6, 6, 7] * len(units))
        # the rule sets the total apart from the languages, whatever they are called
        lines = [head, "-" * len(head), *rows, "-" * len(head), total]
        if self.unspaced and "word" in units:
            lines.append(f"WER of {', '.join(sorted(self.unspaced))}: written without spaces between words, so its "
                         f"words are whole phrases; CER is the rate to compare")
        return "\n".join(lines)


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [round(interval[0], 6), round(interval[1], 6)]


def fixed_width(rows: list[list[str]], widths: list[int], *, left: int = 1) -> list[str]:
    """Rows of cells as lines whose columns line up: each column as wide as `widths` says or as its widest cell
    (a rate past 9999.99 %, a long language tag), the first `left` columns left-aligned, the others (numbers)
    right-aligned."""
    widths = [max(w, *(len(r[i]) for r in rows)) for i, w in enumerate(widths)]
    return [" ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
            for r in rows]


def evaluate(ctc: CTCModel, utts: Sequence, *, labels: str | None = None, decoder: Decoder | None = None,
             show_progress: bool = True, chunk_seconds: float | None = 30.0, chunk_stride: float = 2.0,
             max_batch_seconds: float = 60.0, normalize: bool = False, decode_workers: int = 0,
             decode_timeout: float | None = DEFAULT_TIMEOUT_S, kept: PartialResults | None = None) -> EvalReport:
    """Transcribe every utterance with a reference label and score it per language; `normalize` scores reference
    and hypothesis after xlsr.text.normalize.normalize_text in the utterance's language (character labels).
    `decode_workers`, `decode_timeout`: as transcribe_files (a decoder crash or hang costs its utterance, listed in
    the failures). `kept` (made with `by_file` and the settings of `ctc` and `decoder`): transcripts kept on disk as
    they are made, and those it holds already not made again (transcribe_rest)."""
    refs = References.of(ctc, utts, labels, normalize)
    options = {"decoder": decoder, "chunk_seconds": chunk_seconds, "chunk_stride": chunk_stride,
               "max_batch_seconds": max_batch_seconds, "show_progress": show_progress,
               "decode_workers": decode_workers, "decode_timeout": decode_timeout}
    if kept is None:
        results, failures = transcribe_files(ctc, refs.audio(), **options)
        return refs.score({r.audio: r.hypothesis.text for r in results}, failures)
    failures = transcribe_rest(ctc, refs.audio(), kept, **options)
    return refs.score({a: r["text"] for a, r in kept.results([str(a) for a in refs.audio()])}, failures)


def transcribe_rest(ctc: CTCModel, files: list[Path], kept: PartialResults, **options) -> list[Failure]:
    """transcribe_files (with `options`) of the recordings of `files` that `kept` holds no result of yet, each once
    however often `files` lists it, each result kept there as soon as it is made; returns the failures. Says on
    stderr, as `xlsr transcribe` does, how many were done already, and on a stop how many are kept."""
    recordings: dict[str, Path] = {}  # key (the file a path names) -> the first path naming it
    for f in files:
        recordings.setdefault(kept.key(str(f)), f)
    done = kept.done()
    todo = [f for k, f in recordings.items() if k not in done]
    if len(todo) < len(recordings):
        print(f"xlsr: resuming: {len(recordings) - len(todo)} of {len(recordings)} recording(s) already in "
              f"{kept.path}", file=sys.stderr)
    try:
        _, failures = transcribe_files(ctc, todo, on_result=lambda r: kept.append(r.to_dict()), **options)
    except BaseException:
        held = sum(k in kept.records for k in recordings)
        if held:
            print(f"xlsr: {held} of {len(recordings)} recording(s) transcribed and kept in {kept.path}; the same "
                  f"command resumes", file=sys.stderr)
        raise
    finally:
        kept.close()
    return failures


@dataclass
class References:
    """The utterances of a manifest that carry a reference label, and how they are scored."""

    model: str
    utts: Sequence
    labels: str
    scored: list[int]  # positions in `utts` of the utterances with a reference
    missing: list[int]  # positions of those without one
    oov: dict[str, int]
    normalize: bool

    @classmethod
    def of(cls, ctc: CTCModel, utts: Sequence, labels: str | None, normalize: bool) -> References:
        labels = labels or ctc.vocab.kind
        if labels not in METRICS:
            raise XlsrError(f"--labels: {labels!r} is not one of {', '.join(METRICS)}")
        if normalize and labels != "chars":
            raise XlsrError(f"--normalize-text: applies to character labels (their text), not --labels {labels}")
        # positions, not objects: `utts` may be a large manifest's index, whose utterances are made one at a time
        scored, missing, texts = [], [], []  # texts: the scored references as scored (normalised or not)
        for i, ref in enumerate(labels_of(utts, labels)):
            if ref and normalize:  # in the utterance's language, as `xlsr data normalize-text` writes it
                # a text that normalising empties ("?!") has no reference left, as in the copy `xlsr data
                # normalize-text` writes of its manifest (text ""): skipped alike, not scored as all insertions
                ref = normalize_text(ref, utts[i].lang)
            if ref:
                scored.append(i)
                texts.append(ref)
            else:
                missing.append(i)
        if not scored:
            where = ", ".join(_manifests(utts))
            raise XlsrError(f"{where + ': ' if where else ''}no utterance has a {LABEL_FIELD[labels]!r} reference "
                            f"(--labels {labels})")
        repeated = [(uid, n) for uid, n in Counter(utts[i].id for i in scored).most_common() if n > 1]
        if repeated:  # each line is scored; --hyps then lists two hypotheses under one id, which no reader can tell
            log.warning("%d utterance id(s) appear more than once among those scored (e.g. %r, %d times): each line "
                        "is scored on its own, and --hyps lists them under the same id", len(repeated), *repeated[0])
        oov = unspellable(ctc.vocab, texts) if labels == ctc.vocab.kind else {}
        return cls(ctc.source, utts, labels, scored, missing, oov, normalize)

    def audio(self) -> list[Path]:
        return [Path(self.utts[i].audio) for i in self.scored]

    def score(self, hyps_by_audio: dict[str, str], failures: list[Failure]) -> EvalReport:
        """Edit counts per language of each transcribed utterance's hypothesis (keyed by its audio path)."""
        units = METRICS[self.labels]
        counts: dict[str, dict[str, EditCounts]] = {}
        n_utts: dict[str, int] = {}
        letters: dict[str, list[int]] = {}  # lang -> [letters, letters of scripts written without spaces]
        each: dict[str, dict[str, list[tuple[int, int]]]] = {}  # lang -> unit -> (errors, units) of each utterance
        hyps = []
        for i in self.scored:
            u = self.utts[i]
            # every language with a reference has its row, scored or not: one whose recordings all failed is a row
            # of 0 utterances and no rate, not a language missing from the table
            per_unit = counts.setdefault(u.lang, {unit: EditCounts() for unit in units})
            n_utts.setdefault(u.lang, 0)
            hyp = hyps_by_audio.get(str(Path(u.audio)))
            if hyp is None:
                continue  # listed in failures
            ref = getattr(u, LABEL_FIELD[self.labels])
            if self.normalize:  # in the utterance's language, as `xlsr data normalize-text` wrote the training text
                ref, hyp = normalize_text(ref, u.lang), normalize_hypothesis(hyp, u.lang)
            # as scored (NFC: text/metrics.py), so that a scorer reading the file counts what this one counted
            hyps.append({"id": u.id, "lang": u.lang, "ref": unicodedata.normalize("NFC", ref),
                         "hyp": unicodedata.normalize("NFC", hyp)})
            for unit in units:
                counted = utterance_counts(ref, hyp, unit)
                per_unit[unit] = per_unit[unit] + counted
                each.setdefault(u.lang, {}).setdefault(unit, []).append((counted.errors, counted.ref_len))
            n_utts[u.lang] += 1
            if "word" in units:
                tally = letters.setdefault(u.lang, [0, 0])
                tally[0] += sum(c.isalpha() for c in ref)
                tally[1] += sum(_unspaced_script(c) for c in ref)
        unspaced = [lang for lang, (n, without) in letters.items() if without > n / 2]
        # no total among the languages (EvalReport sums them apart): a language may be coded "all"
        return EvalReport(self.model, self.labels, counts, n_utts, failures,
                          [self.utts[i].id for i in self.missing], self.oov, hyps, unspaced=unspaced,
                          per_utterance=each)


def _manifests(utts: Sequence) -> list[str]:
    """The manifests an utterance index was read from, in order (none for utterances not read from a file)."""
    sources = (getattr(table, "source", None) for table in getattr(utts, "tables", ()))
    return list(dict.fromkeys(str(s) for s in sources if s))


# Scripts written without spaces between words: Thai and Lao, Tibetan, Myanmar, Khmer, hiragana and katakana (with
# its phonetic extensions and half-width forms), Han
_UNSPACED = ((0x0E00, 0x0EFF), (0x0F00, 0x0FFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF),
             (0x31F0, 0x31FF), (0xFF66, 0xFF9F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
             (0x20000, 0x3FFFF))


def _unspaced_script(ch: str) -> bool:
    """Whether `ch` is a letter of a script written without spaces between words (its WER counts phrases)."""
    return ch.isalpha() and any(lo <= ord(ch) <= hi for lo, hi in _UNSPACED)


def unspellable(vocab: Vocabulary, refs: Sequence[str]) -> dict[str, int]:
    """Symbols of `refs` (in NFC, as scored) that no sequence of the vocabulary's tokens spells, with their counts.

    A symbol outside the vocabulary is still spelled when its canonical decomposition is a run of the tokens'
    (é by e and a combining acute, 한 by its jamo, ế by ê and the acute): the vocabulary spells it so
    (`Vocabulary.tokenize`), and the hypothesis is compared in NFC."""
    return vocab.oov_report(unicodedata.normalize("NFC", r) for r in refs)


# Letters that hold the place of `<unk>` while a transcript is normalised, the first the transcript lacks: the rarest
# Han ideographs (CJK Extension B, from its end), which have no case and no other Unicode spelling, so normalize_text
# keeps them as they are. A letter, since what the model could not spell is most often one (punctuation is gone
# from normalised labels): an apostrophe beside it stays inside the word, as beside the letter in the reference
# (l'<unk> against l'x).
_UNK_HOLDERS = range(0x2A6DF, 0x20000, -1)


def normalize_hypothesis(text: str, lang: str | None = None) -> str:
    """normalize_text (in language `lang`) of a transcript whose `<unk>` outputs stay one symbol each (normalize_text
    alone spells one as the word "unk": one wrong character scored as three inserted ones)."""
    if UNK not in text:
        return normalize_text(text, lang)
    holder = next(chr(c) for c in _UNK_HOLDERS if chr(c) not in text)
    return normalize_text(text.replace(UNK, holder), lang).replace(holder, UNK)


def read_manifests(paths: Sequence[str | Path]) -> UtteranceIndex:
    """The utterances of every manifest, in order, as their (memory-mapped) utterance indexes; a bad line refuses."""
    return UtteranceIndex.concat([open_manifest(p) for p in paths])
