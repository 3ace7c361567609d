"""The utterance index: manifests as numpy columns, with no Python object per utterance.

A `Table` holds one manifest: num_samples (int64), language and speaker as small-int codes into a table, the
line numbers (for messages), and the strings (audio path, id, text, phones) as one UTF-8 buffer per column with
int64 offsets. A table stored in a folder (`TableWriter`, `open_table`) is opened memory-mapped, so DataLoader
workers share its pages instead of copying them, and it pickles as its folder. `UtteranceIndex` is a view over
one or more tables (several manifests) and a selection of their rows; it also reads as a sequence of
`Utterance` for code that wants objects (made one at a time, on access).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from xlsr.data.manifest import Utterance
from xlsr.jsonl import parse_json
from xlsr.rates import SAMPLE_RATE

FORMAT = "xlsr-utterance-index"
VERSION = 1
CODES = {"num_samples": np.int64, "lang": np.int16, "speaker": np.int32, "line": np.int64}
STRINGS = ("audio", "id", "text", "phones")  # per row; `speakers` is the speaker table
OPTIONAL = ("id", "text", "phones")  # may be absent on a line (None)
# a file name whose bytes are not UTF-8 reaches a manifest as \udcXX escapes (os.fsdecode's lone surrogates): stored
# as those bytes and read back to the same str, which os.fsencode turns into the name again
SURROGATES = "surrogateescape"


class Strings:
    """A column of strings: UTF-8 `data`, `offsets` (n + 1) into it, `present` (n) where None is allowed."""

    __slots__ = ("data", "offsets", "present")

    def __init__(self, data: np.ndarray, offsets: np.ndarray, present: np.ndarray | None = None) -> None:
        self.data, self.offsets, self.present = data, offsets, present

    @classmethod
    def build(cls, values: Sequence[str | None], *, optional: bool = False) -> Strings:
        """A column from Python strings (None only where `optional`)."""
        encoded = [b"" if v is None else v.encode("utf-8", SURROGATES) for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
        present = np.fromiter((v is not None for v in values), bool, len(values)) if optional else None
        return cls(data, offsets, present)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str | None:
        if self.present is not None and not self.present[i]:
            return None
        return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8", SURROGATES)

    def take(self, rows: np.ndarray) -> list[str | None]:
        """The values at `rows`: `self[i]` for each, with one gather of their offsets instead of one per row."""
        offsets = np.asarray(self.offsets)  # a plain view: slicing a memmap costs microseconds per call
        begins, ends = offsets[rows].tolist(), offsets[rows + 1].tolist()
        present = [True] * len(begins) if self.present is None else np.asarray(self.present)[rows].tolist()
        data = memoryview(np.asarray(self.data))
        return [str(data[b:e], "utf-8", SURROGATES) if p else None for b, e, p in zip(begins, ends, present)]


class Table:
    """The columns of one manifest (or of a list of utterances); `folder` where it is stored, if it is."""

    def __init__(self, codes: dict[str, np.ndarray], strings: dict[str, Strings], langs: Sequence[str],
                 speakers: Strings, *, source: str = "", root: str = "", folder: str | None = None,
                 meta: dict | None = None) -> None:
        self.codes, self.strings, self.langs, self.speakers = codes, strings, tuple(langs), speakers
        self.source, self.root, self.folder, self.meta = source, root, folder, meta or {}

    @classmethod
    def from_utterances(cls, utts: Sequence[Utterance]) -> Table:
        """A table in memory holding `utts` exactly (their audio paths as they are)."""
        langs = {u.lang: None for u in utts}
        lang_code = {lang: k for k, lang in enumerate(langs)}
        speakers = {u.speaker: None for u in utts}
        speaker_code = {s: k for k, s in enumerate(speakers)}
        codes = {"num_samples": np.array([u.num_samples for u in utts], dtype=np.int64),
                 "lang": np.array([lang_code[u.lang] for u in utts], dtype=np.int16),
                 "speaker": np.array([speaker_code[u.speaker] for u in utts], dtype=np.int32),
                 "line": np.arange(1, len(utts) + 1, dtype=np.int64)}
        strings = {key: Strings.build([getattr(u, key) for u in utts], optional=key in OPTIONAL) for key in STRINGS}
        return cls(codes, strings, list(langs), Strings.build(list(speakers)))

    def __len__(self) -> int:
        return len(self.codes["num_samples"])

    def __reduce__(self):
        # A stored table travels to spawned workers as its folder: each reopens the same pages.
        if self.folder is not None:
            return open_table, (self.folder, self.source, self.root)
        return Table, (self.codes, self.strings, self.langs, self.speakers), {"source": self.source,
                                                                               "root": self.root, "meta": self.meta}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.folder = None

    def audio(self, row: int) -> str:
        """The audio path of `row`, resolved against the manifest's folder as `read_manifest` does."""
        raw = self.strings["audio"][row]
        if not self.root:
            return raw
        return str(Path(raw)) if os.path.isabs(raw) else str(Path(self.root) / raw)

    def utterance_id(self, row: int) -> str:
        """The line's id, else the audio file's stem (the builder stores None for a line without one)."""
        value = self.strings["id"][row]
        return Path(self.audio(row)).stem if value is None else value

    def where(self, row: int) -> str:
        """`FILE:LINE` of `row` (its audio path for a table made from objects)."""
        return f"{self.source}:{int(self.codes['line'][row])}" if self.source else self.audio(row)

    def utterance(self, row: int) -> Utterance:
        """`row` as an Utterance, equal to the one `read_manifest` gives for its line."""
        codes = self.codes
        return Utterance(audio=self.audio(row), num_samples=int(codes["num_samples"][row]),
                         lang=self.langs[int(codes["lang"][row])], speaker=self.speakers[int(codes["speaker"][row])],
                         text=self.strings["text"][row], phones=self.strings["phones"][row], id=self.utterance_id(row))


def _column_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.bin"


def _open_column(folder: Path, name: str, dtype) -> np.ndarray:
    path = _column_path(folder, name)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)  # mmap refuses an empty file
    return np.memmap(path, dtype=dtype, mode="r")


def _open_strings(folder: Path, name: str, optional: bool) -> Strings:
    return Strings(_open_column(folder, f"{name}.data", np.uint8), _open_column(folder, f"{name}.offsets", np.int64),
                   _open_column(folder, f"{name}.present", bool) if optional else None)


def read_meta(folder: str | Path) -> dict | None:
    """The meta.json of a stored table, or None if there is none of this format and version."""
    try:
        meta = parse_json((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == FORMAT and meta.get("version") == VERSION else None


def open_table(folder: str | Path, source: str = "", root: str = "") -> Table:
    """A stored table, its columns memory-mapped (read-only, shared by every process that opens them)."""
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        raise OSError(f"{folder}: not an utterance index of version {VERSION}")
    codes = {name: _open_column(folder, name, dtype) for name, dtype in CODES.items()}
    strings = {name: _open_strings(folder, name, name in OPTIONAL) for name in STRINGS}
    speakers = _open_strings(folder, "speakers", False)
    rows = meta["rows"]
    # a folder cut short (a crash between rename and write-back): refused, so the caller rebuilds it
    if not (all(len(c) == rows for c in codes.values()) and _complete(speakers, meta["speakers"])
            and all(_complete(s, rows) for s in strings.values())):
        raise OSError(f"{folder}: columns shorter than meta.json says")
    return Table(codes, strings, meta["langs"], speakers, source=source, root=root, folder=str(folder), meta=meta)


def _complete(column: Strings, rows: int) -> bool:
    return len(column) == rows and len(column.data) == column.offsets[-1] and (
        column.present is None or len(column.present) == rows)


class TableWriter:
    """Writes a table into a folder chunk by chunk (codes already global), then its meta.json."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.rows = 0
        self._files = {}
        self._ends = {name: 0 for name in STRINGS}
        for name in CODES:
            self._files[name] = open(_column_path(self.folder, name), "wb")
        for name in STRINGS:
            for part in ("data", "offsets") + (("present",) if name in OPTIONAL else ()):
                self._files[f"{name}.{part}"] = open(_column_path(self.folder, f"{name}.{part}"), "wb")
            np.zeros(1, np.int64).tofile(self._files[f"{name}.offsets"])

    def append(self, codes: dict[str, np.ndarray], strings: dict[str, list[str | None]]) -> None:
        """Rows given as code arrays and lists of strings (None where absent)."""
        for name, dtype in CODES.items():
            np.asarray(codes[name], dtype=dtype).tofile(self._files[name])
        for name in STRINGS:
            column = Strings.build(strings[name], optional=name in OPTIONAL)
            column.data.tofile(self._files[f"{name}.data"])
            (column.offsets[1:] + self._ends[name]).tofile(self._files[f"{name}.offsets"])
            self._ends[name] += int(column.offsets[-1])
            if column.present is not None:
                column.present.tofile(self._files[f"{name}.present"])
        self.rows += len(codes["num_samples"])

    def close(self, langs: Sequence[str], speakers: Sequence[str], meta: dict) -> None:
        """Write the language and speaker tables and meta.json (the folder is complete after this)."""
        for f in self._files.values():
            f.close()
        table = Strings.build(list(speakers))
        table.data.tofile(_column_path(self.folder, "speakers.data"))
        table.offsets.tofile(_column_path(self.folder, "speakers.offsets"))
        meta = {"format": FORMAT, "version": VERSION, "rows": self.rows, "langs": list(langs),
                "speakers": len(table), **meta}
        (self.folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")

    def abort(self) -> None:
        """Close the files after a failure (the caller removes the folder)."""
        for f in self._files.values():
            f.close()


class UtteranceIndex(Sequence):
    """A selection of rows (`rows`, global over `tables`) of one or more tables; index i reads as an Utterance.

    In memory per row: the row number, num_samples and a language code (18 bytes); the strings stay in the
    tables' (memory-mapped) buffers and are decoded on access.
    """

    def __init__(self, tables: Sequence[Table], rows: np.ndarray | None = None) -> None:
        self.tables = tuple(tables)
        self.starts = np.concatenate([[0], np.cumsum([len(t) for t in self.tables])]).astype(np.int64)
        self.rows = np.arange(self.starts[-1], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.langs = tuple(sorted({lang for t in self.tables for lang in t.langs}))
        code = {lang: k for k, lang in enumerate(self.langs)}
        remap = [np.array([code[lang] for lang in t.langs], dtype=np.int16) for t in self.tables]
        if len(self.tables) == 1 and rows is None:  # the whole of one manifest: no gather needed
            self.num_samples = np.asarray(self.tables[0].codes["num_samples"])
            self.lang_codes = remap[0][self.tables[0].codes["lang"]] if len(self) else np.zeros(0, np.int16)
        else:
            self.num_samples = _gathered([t.codes["num_samples"] for t in self.tables], self.rows, np.int64)
            self.lang_codes = _gathered([m[t.codes["lang"]] for m, t in zip(remap, self.tables)], self.rows, np.int16)

    @classmethod
    def from_utterances(cls, utts: Sequence[Utterance]) -> UtteranceIndex:
        """An in-memory index of a list of utterances (tests, small tools)."""
        return cls([Table.from_utterances(utts)])

    @classmethod
    def concat(cls, parts: Sequence[UtteranceIndex]) -> UtteranceIndex:
        """The utterances of `parts`, one after the other."""
        tables, rows, base = [], [], 0
        for part in parts:
            tables += part.tables
            rows.append(part.rows + base)
            base += int(part.starts[-1])
        return cls(tables, np.concatenate(rows) if rows else None)

    def __len__(self) -> int:
        return len(self.rows)

    def __reduce__(self):
        # to a spawned worker: the tables (as their folders) and the rows; the rest is recomputed there
        return UtteranceIndex, (self.tables, self.rows)

    def _locate(self, i: int) -> tuple[Table, int]:
        row = int(self.rows[i])
        if len(self.tables) == 1:
            return self.tables[0], row
        k = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.tables[k], row - int(self.starts[k])

    def audio(self, i: int) -> str:
        """Audio path of utterance i."""
        table, row = self._locate(i)
        return table.audio(row)

    def lang(self, i: int) -> str:
        """Language code of utterance i."""
        return self.langs[self.lang_codes[i]]

    def utterance_id(self, i: int) -> str:
        """Id of utterance i (the audio file's stem when the line has none)."""
        table, row = self._locate(i)
        return table.utterance_id(row)

    def label(self, i: int, field: str) -> str | None:
        """The `text` or `phones` of utterance i (None when the line has none)."""
        table, row = self._locate(i)
        return table.strings[field][row]

    def labels(self, field: str, chunk: int = 65536) -> Iterator[str | None]:
        """The `text` or `phones` of every utterance in order (`label(i, field)` for each i, read in bulk)."""
        for start in range(0, len(self), chunk):
            rows = self.rows[start:start + chunk]
            table_of = np.searchsorted(self.starts, rows, side="right") - 1
            values: list[str | None] = [None] * len(rows)
            for k in np.unique(table_of).tolist():
                at = np.flatnonzero(table_of == k)
                for pos, value in zip(at.tolist(), self.tables[k].strings[field].take(rows[at] - self.starts[k])):
                    values[pos] = value
            yield from values

    def where(self, i: int) -> str:
        """`FILE:LINE` of utterance i."""
        table, row = self._locate(i)
        return table.where(row)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(np.arange(len(self))[i])
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        table, row = self._locate(i)
        return table.utterance(row)

    def __iter__(self) -> Iterator[Utterance]:
        return (self[i] for i in range(len(self)))

    def subset(self, selected: np.ndarray) -> UtteranceIndex:
        """The utterances at positions `selected` (an index array or a boolean mask) of this index."""
        return UtteranceIndex(self.tables, self.rows[np.asarray(selected)])

    def hours(self, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
        """Hours of audio per language, sorted by language code."""
        samples = np.bincount(self.lang_codes, weights=self.num_samples, minlength=len(self.langs))
        return {lang: float(samples[k]) / sample_rate / 3600 for k, lang in enumerate(self.langs) if samples[k] > 0}

    def num_speakers(self) -> int:
        """Distinct speaker names among the selected utterances."""
        names = set()
        for k, table in enumerate(self.tables):
            rows = self.rows[(self.rows >= self.starts[k]) & (self.rows < self.starts[k + 1])] - self.starts[k]
            names.update(table.speakers[int(c)] for c in np.unique(np.asarray(table.codes["speaker"])[rows]))
        return len(names)

    def by_language(self) -> dict[str, UtteranceIndex]:
        """One index per language, sorted by language code."""
        return {lang: self.subset(np.flatnonzero(self.lang_codes == k)) for k, lang in enumerate(self.langs)
                if np.any(self.lang_codes == k)}


def _gathered(columns: list[np.ndarray], rows: np.ndarray, dtype) -> np.ndarray:
    if not columns:
        return np.zeros(0, dtype=dtype)
    return np.concatenate([np.asarray(c) for c in columns]).astype(dtype, copy=False)[rows]


def as_index(utts: UtteranceIndex | Sequence[Utterance]) -> UtteranceIndex:
    """`utts` as an index (a list of Utterance is copied into an in-memory one)."""
    return utts if isinstance(utts, UtteranceIndex) else UtteranceIndex.from_utterances(list(utts))
