"""The index of a sharded corpus (SHARDS/index.json): what each tar shard holds, checked against the tars.

Layout written by `xlsr data shard` (data/shards.py): `SHARDS/<split>/<lang>-NNNNNN.tar`, one language per
shard, and `SHARDS/index.json`:

    {"format": "xlsr-shards", "version": 1, "sample_rate": 16000, "shard_size": <bytes>,
     "sources": {"<split>/<lang>": {"manifest": ..., "sha256": ..., "skipped": N}},
     "shards": [{"path": "train/en-000000.tar", "lang": "en", "split": "train", "utterances": 120,
                 "num_samples": ..., "hours": ..., "bytes": ..., "sha256": ..., "lines": [0, 120],
                 "symbols": {"phones": [...], "chars": [...]},
                 "symbol_counts": {"phones": {"a": 310, ...}, "chars": {...}}, "nfc_respelled": [...],
                 "char_runs": {"e\u0301": 12, ...}}, ...]}

`lines` is the shard's range of manifest lines (for resuming the writer): each shard's starts where the previous
one's ended, so `lines` minus `utterances` is the unreadable audio it left out, and a source's `skipped` is their
sum. `symbols` are the label symbols its utterances use, so that fine-tuning builds its vocabulary without reading
the tars; `symbol_counts` how often each occurs in them (the same symbols per kind), so that symbols outside a
given vocabulary are counted as a manifest's labels count them; `nfc_respelled` the characters Unicode NFC
respells in its `text` labels (text/normalize.py's `nfc_respelled`, sorted; empty when all are NFC), so that a
loose accent of NFC text (Yoruba's on ẹ) is told from an NFD spelling without the labels; `char_runs` the runs of
two or more characters of its `text` labels that NFC could join (a letter and its marks, a Hangul syllable's jamo:
text/vocab.py's `composing_runs`) with their counts, so that a vocabulary judges a mark with its letter, as it
spells the labels (é typed as e and an acute is the token é of a vocabulary of composed letters). The last three
are absent from an index written before xlsr recorded them: fine-tuning then counts each symbol once and judges the
vocabulary alone, and says so; without `char_runs` (an index written before xlsr recorded it, whose other fields
it reads as before) it judges each character apart from its letter, and says so. A folder with
`index.partial.jsonl` and no `index.json` is a writer's run that did not finish: it is refused in one line until
`xlsr data shard` is run again.

Before a run reads a split, `check_shards` compares the index with the folder (file sizes only: no shard is
read): a listed shard that is missing or larger than listed, or a tar the index does not list, means the index
and the tars disagree and the run is refused in one line. A shard *smaller* than listed is a truncated copy: the
reader reports it and counts its missing utterances as bad files (data/shard_stream.py).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xlsr.errors import XlsrError
from xlsr.jsonl import parse_json
from xlsr.rates import SAMPLE_RATE

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
PARTIAL_NAME = "index.partial.jsonl"  # the shards a writer's unfinished run completed (data/shards.py)
FORMAT = "xlsr-shards"
VERSION = 1
_INT_FIELDS = ("utterances", "num_samples", "bytes")


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the index lists it."""

    path: str  # relative to the shard folder, posix
    lang: str
    split: str
    utterances: int
    num_samples: int
    bytes: int
    sha256: str
    lines: tuple[int, int] = (0, 0)  # manifest lines [first, end) this shard was written from
    symbols: dict[str, list[str]] = field(default_factory=dict)  # label symbols per kind ("phones", "chars")
    # per kind, how often each of `symbols` occurs in the labels; None: an index written before they were counted
    symbol_counts: dict[str, dict[str, int]] | None = None
    nfc_respelled: list[str] | None = None  # characters NFC respells in the `text` labels; None: as symbol_counts
    # runs of the `text` labels that NFC could join (two or more characters) with their counts; None: as symbol_counts
    char_runs: dict[str, int] | None = None

    @property
    def hours(self) -> float:
        return self.num_samples / SAMPLE_RATE / 3600

    def to_dict(self) -> dict:
        """The index entry (with `hours`, for people reading the file)."""
        d = asdict(self)
        for key in ("symbol_counts", "nfc_respelled", "char_runs"):
            if d[key] is None:  # kept from an earlier index that lacked it: unknown, not empty
                del d[key]
        d["lines"] = list(self.lines)
        d["hours"] = round(self.hours, 6)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str) -> ShardInfo:
        """An index entry; XlsrError naming `where` when a field is missing or of the wrong type."""
        if not isinstance(d, dict):
            raise XlsrError(f"{where}: expected a JSON object")
        missing = [k for k in ("path", "lang", "split", *_INT_FIELDS, "sha256") if k not in d]
        if missing:
            raise XlsrError(f"{where}: missing field(s) {', '.join(missing)}")
        bad = [k for k in _INT_FIELDS if not _count(d[k])]
        if bad:
            raise XlsrError(f"{where}: {', '.join(bad)} must be non-negative integers")
        if d["utterances"] == 0:
            raise XlsrError(f"{where}: utterances must be positive (a shard holds at least one)")
        path = Path(str(d["path"]))
        if path.is_absolute() or ".." in path.parts:
            raise XlsrError(f"{where}: path {d['path']!r} must be relative to the shard folder")
        lines = d["lines"] if d.get("lines") is not None else [0, 0]
        if not isinstance(lines, list) or len(lines) != 2 or not all(map(_count, lines)) or lines[0] > lines[1]:
            raise XlsrError(f"{where}: lines must be [first, end], two non-negative integers in order, got {lines!r}")
        symbols = d["symbols"] if d.get("symbols") is not None else {}
        if not isinstance(symbols, dict) or not all(isinstance(v, list) for v in symbols.values()):
            raise XlsrError(f"{where}: symbols must be an object of symbol lists, got {symbols!r}"[:200])
        counts = d.get("symbol_counts")
        if counts is not None and not _symbol_counts_of(counts, symbols):
            raise XlsrError(f"{where}: symbol_counts must give each kind's symbols (those of 'symbols') a positive "
                            f"count, got {counts!r}"[:200])
        respelled = d.get("nfc_respelled")
        if respelled is not None and not (isinstance(respelled, list)
                                          and all(isinstance(c, str) and len(c) == 1 for c in respelled)):
            raise XlsrError(f"{where}: nfc_respelled must be a list of characters, got {respelled!r}"[:200])
        runs = d.get("char_runs")
        if runs is not None and not _char_runs_of(runs, symbols.get("chars", []), (counts or {}).get("chars")):
            raise XlsrError(f"{where}: char_runs must give runs of two or more of the 'chars' symbols a positive "
                            f"count, no symbol more often than symbol_counts does, got {runs!r}"[:200])
        return cls(path=path.as_posix(), lang=str(d["lang"]), split=str(d["split"]), utterances=d["utterances"],
                   num_samples=d["num_samples"], bytes=d["bytes"], sha256=str(d["sha256"]),
                   lines=(lines[0], lines[1]), symbols=dict(symbols),
                   symbol_counts=None if counts is None else {k: dict(v) for k, v in counts.items()},
                   nfc_respelled=None if respelled is None else list(respelled),
                   char_runs=None if runs is None else dict(runs))


def _symbol_counts_of(counts, symbols: dict[str, list]) -> bool:
    """Whether a JSON value is an entry's symbol counts: per kind of `symbols`, a positive count for each symbol."""
    return (isinstance(counts, dict) and counts.keys() == symbols.keys()
            and all(isinstance(c, dict) and c.keys() == set(symbols[k])
                    and all(_count(n) and n > 0 for n in c.values()) for k, c in counts.items()))


def _char_runs_of(runs, symbols: list, counts: dict[str, int] | None) -> bool:
    """Whether a JSON value is an entry's char runs: runs of two or more of `symbols` with positive counts that,
    with `counts` (when known), use no symbol more often than the labels hold it."""
    if not (isinstance(runs, dict) and all(isinstance(r, str) and len(r) > 1 and _count(n) and n > 0
                                           for r, n in runs.items())):
        return False
    used = Counter()
    for run, n in runs.items():
        used.update({c: k * n for c, k in Counter(run).items()})
    return used.keys() <= set(symbols) and (counts is None or all(n <= counts[c] for c, n in used.items()))


def _count(value) -> bool:
    """Whether a JSON value is a non-negative integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass
class ShardIndex:
    """A shard folder's index: its root and its shards."""

    root: Path
    shards: list[ShardInfo]
    shard_size: int = 0
    sources: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / INDEX_NAME

    def of_split(self, split: str, langs: list[str] | None = None) -> list[ShardInfo]:
        """The shards of `split` (only `langs`, when given); XlsrError when there are none."""
        found = [s for s in self.shards if s.split == split]
        if not found:
            raise XlsrError(f"{self.path}: no shards of split {split!r} (splits: {', '.join(self.splits()) or 'none'})")
        if langs is not None:
            have = {s.lang for s in found}
            unknown = [lang for lang in langs if lang not in have]
            if unknown:
                raise XlsrError(f"{self.path}: no {split} shards for language(s) {', '.join(unknown)} "
                                f"(found: {', '.join(sorted(have))})")
            found = [s for s in found if s.lang in langs]
        return found

    def splits(self) -> list[str]:
        return sorted({s.split for s in self.shards})

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "sample_rate": SAMPLE_RATE, "shard_size": self.shard_size,
                "sources": self.sources, "shards": [s.to_dict() for s in self.shards]}


def is_shard_folder(path: str | Path) -> bool:
    """Whether `path` is a shard folder (it holds an index.json, or the partial index of an unfinished run)."""
    return (Path(path) / INDEX_NAME).is_file() or (Path(path) / PARTIAL_NAME).is_file()


def shard_source(path: str | Path) -> tuple[Path, str | None] | None:
    """(shard folder, split or None) for `SHARDS` or `SHARDS/<split>`; None for anything else (a manifest)."""
    path = Path(path)
    if is_shard_folder(path):
        return path, None
    if path.is_dir() and is_shard_folder(path.parent):
        return path.parent, path.name
    return None


def read_index(root: str | Path) -> ShardIndex:
    """Read SHARDS/index.json; one XlsrError line naming the file (and entry) for anything malformed."""
    root = Path(root)
    path = root / INDEX_NAME
    if not path.is_file():
        if (root / PARTIAL_NAME).is_file():
            raise XlsrError(f"{path}: no shard index: the `xlsr data shard` run writing {root} did not finish "
                            f"(it left {PARTIAL_NAME}); run it again to complete the shards (if it was refused for "
                            f"unreadable audio, fix or drop those files, or raise --max-bad-share)")
        raise XlsrError(f"{path}: no shard index (write one with `xlsr data shard`)")
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise XlsrError(f"{path}: not a valid JSON index ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise XlsrError(f"{path}: not an xlsr shard index (format is not {FORMAT!r})")
    if data.get("version") != VERSION:
        raise XlsrError(f"{path}: shard index version {data.get('version')!r}; this xlsr reads version {VERSION}")
    if data.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise XlsrError(f"{path}: sample_rate {data.get('sample_rate')} (expected {SAMPLE_RATE})")
    entries = data.get("shards")
    if not isinstance(entries, list):
        raise XlsrError(f"{path}: 'shards' must be a list")
    shards = [ShardInfo.from_dict(e, f"{path}: shards[{i}]") for i, e in enumerate(entries)]
    shard_size, sources = data.get("shard_size", 0), data.get("sources", {})
    if not _count(shard_size):
        raise XlsrError(f"{path}: shard_size must be a non-negative integer (bytes), got {shard_size!r}")
    if not isinstance(sources, dict):
        raise XlsrError(f"{path}: sources must be an object (\"<split>/<lang>\": manifest), got {sources!r}"[:200])
    return ShardIndex(root, shards, shard_size=shard_size, sources=sources)


def check_shards(index: ShardIndex, split: str) -> None:
    """Refuse (one line) a split whose tars disagree with the index; warn about truncated shards."""
    listed = {s.path for s in index.shards if s.split == split}
    for s in index.shards:
        if s.split != split:
            continue
        file = index.root / s.path
        if not file.is_file():
            raise XlsrError(f"{index.path}: lists {s.path}, which does not exist; the index and the tars disagree "
                            f"(re-run `xlsr data shard`)")
        size = file.stat().st_size
        if size > s.bytes:
            raise XlsrError(f"{file}: {size} bytes, but {index.path} lists {s.bytes}; the index and the tars "
                            f"disagree (re-run `xlsr data shard`)")
        if size < s.bytes:
            log.warning("%s: %d of %d bytes: truncated; its missing utterances count as bad files", file, size, s.bytes)
    folder = index.root / split
    unlisted = sorted(p.relative_to(index.root).as_posix() for p in folder.glob("*.tar")
                      if p.relative_to(index.root).as_posix() not in listed)
    if unlisted:
        raise XlsrError(f"{folder}: {len(unlisted)} tar(s) not in {index.path} (e.g. {unlisted[0]}); the index "
                        f"and the tars disagree (re-run `xlsr data shard`)")
