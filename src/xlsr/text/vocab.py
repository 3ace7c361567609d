"""CTC output vocabularies: IPA phones or characters, with the blank at index 0 and `<unk>` at 1.

Phone labels are space-separated IPA tokens (`h ə l oʊ | w ɜː l d`); a `|` token, where present,
marks a word boundary and is kept as a token. Character labels are plain text; each space becomes
the word-boundary token `|` (fairseq's `dict.ltr.txt` convention, spec §7.3 and pitfall 7).

A vocabulary spells a label in its own tokens where Unicode calls the text the same (canonical equivalence): é
typed as e and a combining acute is the token é of a vocabulary of composed letters, and the reverse; a phone
likewise. So a dev set, a lexicon or a given vocabulary in another Unicode form than the training labels gets the
ids of the same text, as scoring compares texts in NFC (text/metrics.py). A label whose symbols are all tokens is
split as written: the vocabulary built from it spells it as before; in another, only the letter and marks that hold
a symbol outside are respelled, and the rest keeps its tokens as written.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xlsr.atomic import write_json
from xlsr.errors import XlsrError, listing
from xlsr.jsonl import parse_json

BLANK = "<blank>"
UNK = "<unk>"
WORD_BOUNDARY = "|"
SPECIAL_TOKENS = (BLANK, UNK)
MAX_REORDERED = 6  # the longest text `Vocabulary` respells with tokens whose marks come in another order (ệ by ê, ̣)
KINDS = ("phones", "chars")


def tokenize(label: str, kind: str) -> list[str]:
    """Split one label into vocabulary symbols: phones on whitespace, chars one by one (space → `|`)."""
    if kind == "phones":
        return label.split()
    if kind == "chars":
        # Runs of whitespace are one word boundary; leading/trailing spaces carry no information.
        return list(" ".join(label.split()).replace(" ", WORD_BOUNDARY))
    raise XlsrError(f"vocabulary kind: {kind!r} is not one of {', '.join(KINDS)}")


def format_counts(counts: dict[str, int], limit: int = 10) -> str:
    """'x'×3, 'y'×1, ... for symbol counts, most frequent first (ties alphabetically), at most `limit` shown."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return listing([f"{sym!r}×{n}" for sym, n in items], limit)


@dataclass
class Vocabulary:
    """An ordered token list; a token's position is its CTC output index (0 = blank, 1 = `<unk>`)."""

    tokens: list[str]
    kind: str = "phones"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _by_nfd: dict[str, str] | None = field(init=False, repr=False, compare=False)  # NFD form -> token, made on use

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise XlsrError(f"vocabulary kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        check_tokens(self.tokens)
        self.tokens = list(self.tokens)
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self._by_nfd = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, labels: Iterable[str], kind: str = "phones") -> Vocabulary:
        """The vocabulary of every symbol in `labels` (sorted, after blank, `<unk>` and `|`)."""
        symbols: set[str] = set()
        for label in labels:
            symbols.update(tokenize(label, kind))
        if kind == "chars":
            symbols.add(WORD_BOUNDARY)  # a char model always needs the word boundary
        return cls(_ordered(symbols), kind)

    @classmethod
    def union(cls, vocabs: Sequence[Vocabulary]) -> Vocabulary:
        """One vocabulary holding every token of `vocabs` (multilingual fine-tuning, spec §7.3)."""
        if not vocabs:
            raise XlsrError("vocabulary union: no vocabularies given")
        kinds = {v.kind for v in vocabs}
        if len(kinds) > 1:
            raise XlsrError(f"vocabulary union: cannot mix kinds {sorted(kinds)}")
        symbols: set[str] = set()
        for v in vocabs:
            symbols.update(v.tokens[len(SPECIAL_TOKENS):])
        return cls(_ordered(symbols), kinds.pop())

    # -- indices --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def word_boundary_id(self) -> int | None:
        """Index of `|`, or None when the vocabulary has no word boundary (phones without `|`)."""
        return self._index.get(WORD_BOUNDARY)

    def index(self, token: str) -> int:
        """The id of `token`, `<unk>`'s id when it is not in the vocabulary."""
        return self._index.get(token, self.unk_id)

    # -- labels ---------------------------------------------------------------------------------
    def tokenize(self, label: str) -> list[str]:
        """Split a label into symbols, each outside the vocabulary respelled with the tokens that write the same
        text in another Unicode form when there are such tokens (the module's docstring); the rest stay outside."""
        symbols = tokenize(label, self.kind)
        if self._index.keys() >= set(symbols):  # most labels: every symbol is a token
            return symbols
        if self.kind == "phones":  # a phone is one token: only another spelling of the same token matches it
            return [s if s in self._index else self._nfd_forms().get(_nfd(s), s) for s in symbols]
        # a run that NFC could join and holds a symbol outside is respelled; the other runs stay as written (a mark
        # the text puts before another, Arabic's shadda before its fatha, keeps its place and its id)
        outside = {s for s in symbols if s not in self._index}
        return [t for run in composing_runs(symbols)
                for t in (run if outside.isdisjoint(run) else self._respelled("".join(run)))]

    def _respelled(self, text: str) -> list[str]:
        """The tokens writing `text` (a run of a label that NFC could join) in another Unicode form: the fewest for
        all of it (a Devanagari letter with its nukta is the token ड़ that NFC keeps as two), else its NFC
        characters one by one, each a token, spelled by tokens or left as it is."""
        whole = self._spelling(text)
        if whole is not None:
            return whole
        return [t for s in unicodedata.normalize("NFC", text)
                for t in ([s] if s in self._index else self._spelling(s) or [s])]

    def _nfd_forms(self) -> dict[str, str]:
        """Each token's NFD form -> the token (the first of those sharing a form), special tokens and `|` aside."""
        if self._by_nfd is None:
            self._by_nfd = {}
            for t in self.tokens[len(SPECIAL_TOKENS):]:
                if t != WORD_BOUNDARY:
                    self._by_nfd.setdefault(_nfd(t), t)
        return self._by_nfd

    def _spelling(self, symbol: str) -> list[str] | None:
        """The fewest tokens whose NFD forms, concatenated, are `symbol`'s NFD form (ế by ê and an acute, 한 by its
        jamo), else the fewest whose text is `symbol` in another order of its marks; None when no tokens write it."""
        text, forms = _nfd(symbol), self._nfd_forms()
        best: dict[int, list[str]] = {0: []}  # prefix length -> the fewest tokens spelling it
        for end in range(1, len(text) + 1):
            for start in list(best):  # the prefixes spelled so far, all shorter than `end`
                token = forms.get(text[start:end])
                if token is not None and (end not in best or len(best[start]) + 1 < len(best[end])):
                    best[end] = [*best[start], token]
        return best.get(len(text)) or self._reordered_spelling(text)

    def _reordered_spelling(self, text: str) -> list[str] | None:
        """The fewest tokens whose text has the NFD form `text` although their NFD forms, end to end, are not it:
        ệ by ê and a dot below (as Vietnamese keyboards type it), where NFD puts the dot, which sits below, before the
        circumflex of ê. Tried for a letter and its few marks (at most MAX_REORDERED characters), among the tokens made
        of `text`'s characters only."""
        if not 2 <= len(text) <= MAX_REORDERED:
            return None
        need, chars = Counter(text), set(text)
        parts = [(t, Counter(form)) for form, t in self._nfd_forms().items() if chars.issuperset(form)]
        if chars - {c for _, held in parts for c in held}:
            return None  # a character no token holds

        def search(sofar: list[str], left: Counter, count: int) -> list[str] | None:
            """`count` more tokens after `sofar`, writing the characters `left`, such that all of them write `text`."""
            if count == 0:
                return sofar if not left and _nfd("".join(sofar)) == text else None
            for token, held in parts:
                if not held - left:  # the token's characters are among those still to write
                    found = search([*sofar, token], left - held, count - 1)
                    if found is not None:
                        return found
            return None

        for count in range(2, len(text) + 1):  # one token would have been a run of one form
            found = search([], need, count)
            if found is not None:
                return found
        return None

    def encode(self, label: str, *, strict: bool = False, source: str = "label") -> list[int]:
        """Token ids of `label` (`tokenize`'s symbols); unknown symbols map to `<unk>`, or raise XlsrError when
        `strict`."""
        try:  # most labels: every symbol is a token, as written (a training label always is)
            return [self._index[s] for s in tokenize(label, self.kind)]
        except KeyError:
            symbols = self.tokenize(label)
        if strict:
            unknown = Counter(s for s in symbols if s not in self._index)
            if unknown:
                raise XlsrError(f"{source}: {len(unknown)} symbols outside the vocabulary: "
                                f"{format_counts(dict(unknown.most_common()))}")
        return [self.index(s) for s in symbols]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a token-id sequence, blanks dropped (no CTC collapsing: see decode.greedy)."""
        tokens = [self.tokens[int(i)] for i in ids if int(i) != self.blank_id]
        return self.join(tokens)

    def join(self, tokens: Sequence[str]) -> str:
        """Text of a token sequence: phones joined by spaces, chars concatenated with `|` as space."""
        if self.kind == "phones":
            return " ".join(tokens)
        return " ".join("".join(tokens).replace(WORD_BOUNDARY, " ").split())

    def oov_report(self, labels: Iterable[str]) -> dict[str, int]:
        """Symbols in `labels` outside this vocabulary, with their counts, most frequent first."""
        unknown: Counter[str] = Counter()
        for label in labels:
            if not self._index.keys() >= set(tokenize(label, self.kind)):  # most labels: every symbol is a token
                unknown.update(s for s in self.tokenize(label) if s not in self._index)
        return dict(unknown.most_common())

    def check_labels(self, labels: Iterable[str], *, source: str = "labels") -> None:
        """Raise XlsrError naming `source` and the unknown symbols with counts, if there are any."""
        report = self.oov_report(labels)
        if report:
            total = sum(report.values())
            raise XlsrError(f"{source}: {total} occurrences of {len(report)} symbols outside the "
                            f"vocabulary: {format_counts(report)}")

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict | list, *, source: str = "vocabulary", kind: str | None = None) -> Vocabulary:
        """From `{"kind", "tokens"}` or a bare token list (a checkpoint's `vocab`). `kind`, when given, is the
        labels it is used for: a bare list takes it (a phone set of one-letter symbols looks like characters), a
        stated other kind is one XlsrError; without it a bare list's kind is guessed."""
        if isinstance(data, list):
            check_tokens(data, source)
            return cls(data, kind or guess_kind(data))
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise XlsrError(f"{source}: expected a JSON object with a 'tokens' list")
        check_tokens(data["tokens"], source)
        stated = data.get("kind")
        if stated is not None and stated not in KINDS:
            raise XlsrError(f"{source}: kind {stated!r} is not one of {', '.join(KINDS)}")
        if kind and stated and stated != kind:
            raise XlsrError(f"{source}: a vocabulary of {stated} but --labels is {kind}")
        return cls(data["tokens"], stated or kind or guess_kind(data["tokens"]))

    def to_json(self, path: str | Path) -> None:
        """Write `{"kind": ..., "tokens": [...]}` as UTF-8 JSON (atomically)."""
        write_json(path, self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, path: str | Path, kind: str | None = None) -> Vocabulary:
        """Read a vocabulary written by `to_json` (or a bare JSON token list); `kind` as in `from_dict`."""
        path = Path(path)
        try:
            data = parse_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise XlsrError(f"{path}: no such vocabulary file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise XlsrError(f"{path}: not a JSON vocabulary ({exc})") from None
        return cls.from_dict(data, source=str(path), kind=kind)


def check_tokens(tokens: Sequence, source: str = "vocabulary") -> None:
    """XlsrError naming `source` unless `tokens` are distinct strings without whitespace, blank and `<unk>` first."""
    odd = [t for t in tokens if not isinstance(t, str)]
    if odd:
        raise XlsrError(f"{source}: tokens must be strings; got {listing([repr(t) for t in odd])}")
    if list(tokens[:2]) != list(SPECIAL_TOKENS):
        raise XlsrError(f"{source}: must start with {BLANK!r}, {UNK!r}; got {list(tokens[:2])}")
    dupes = [t for t, n in Counter(tokens).items() if n > 1]
    if dupes:
        raise XlsrError(f"{source}: duplicate tokens {dupes[:10]}")
    bad = [t for t in tokens if not t or any(c.isspace() for c in t)]
    if bad:
        raise XlsrError(f"{source}: tokens may not be empty or contain whitespace: {bad[:10]}")


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def composing_runs(symbols: list[str]) -> list[list[str]]:
    """A character label's `symbols` in runs that NFC keeps apart: a run ends before a symbol that starts with a
    starter (combining class 0) and that NFC writes after the run as it writes it alone. So a mark joins the run of
    its letter, as do Hangul's vowel and final jamo (class 0, but NFC composes them into a syllable)."""
    runs: list[list[str]] = []
    for s in symbols:
        # below U+0300 no symbol joins what comes before it (NFC's second parts are marks, jamo and a few vowel signs)
        if runs and s >= "\u0300" and (unicodedata.combining(_nfd(s)[0]) or _composes("".join(runs[-1]), s)):
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def _composes(text: str, symbol: str) -> bool:
    """Whether NFC writes `text` followed by `symbol` otherwise than each of them apart."""
    nfc = unicodedata.normalize("NFC", text)
    return unicodedata.normalize("NFC", nfc + symbol) != nfc + unicodedata.normalize("NFC", symbol)


def _ordered(symbols: set[str]) -> list[str]:
    symbols = set(symbols) - set(SPECIAL_TOKENS)
    head = [WORD_BOUNDARY] if WORD_BOUNDARY in symbols else []
    return [*SPECIAL_TOKENS, *head, *sorted(symbols - {WORD_BOUNDARY})]


def guess_kind(tokens: Sequence[str]) -> str:
    """'chars' when every non-special token is one character, else 'phones' (for bare token lists)."""
    body = [t for t in tokens if t not in SPECIAL_TOKENS]
    return "chars" if body and all(len(t) == 1 for t in body) else "phones"


def union(vocabs: Sequence[Vocabulary]) -> Vocabulary:
    """Module-level alias of `Vocabulary.union`."""
    return Vocabulary.union(vocabs)
