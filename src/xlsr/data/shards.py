"""Writing a sharded corpus: WebDataset-style tars from our manifests (`xlsr data shard`).

Per utterance two tar members with one key: `<key>.flac` (16 kHz mono, 16-bit FLAC of what `load_audio`
gives) and `<key>.json` (the manifest fields: id, lang, speaker, num_samples, and text/phones when present;
num_samples is the decoded length). One language per shard; a shard closes before it would pass `shard_size`
bytes. The index (data/shard_index.py) lists every shard with its language, split, counts, hours, byte size and
sha256, and what fine-tuning needs to know of its labels: their symbols with their counts, and the characters
NFC respells in their texts.

Writes are atomic and resumable: each shard is written under a temporary name and renamed when complete, and a
line per completed shard is appended to `SHARDS/index.partial.jsonl`. Re-running the same command keeps every
complete shard whose manifest (sha256) and shard size are unchanged and whose file has its listed size, and
writes only the rest; `index.json` is written last, renamed over the earlier one. Just before a re-run first
places or removes a tar, it moves an earlier `index.json` into the partial index and removes it, so that a run
stopped while rewriting tars never leaves an index describing other tars (readers refuse the folder until a run
finishes); a re-run that changes no tar (refused before it places one, or keeping every shard) leaves the earlier
index readable throughout. Before a tar is renamed over an earlier one, a line retiring the earlier one's entry
is appended, so no entry outlives the file it describes. A shard's manifest lines [first, end) start where the
previous shard ended (unreadable lines included).

The manifests are read through their utterance index (data/index_cache.py: built once, memory-mapped), one
`Utterance` at a time, so the writer's memory does not grow with the corpus. Bad manifest lines and unreadable
audio are each held to --max-bad-share of a manifest, as in pretraining: fewer are reported and left out (bad
lines listed beside the manifest), more refuse it (too many bad lines before any shard is written, too much
unreadable audio once the manifest has been read). Unreadable audio is counted per manifest over all its shards,
kept or new (a shard's line range minus its utterances), and written to the index's `sources` as `skipped`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from webdataset import TarWriter

from xlsr.atomic import write_json, write_jsonl
from xlsr.data.audio import load_audio
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import Utterance, find_manifests
from xlsr.data.shard_index import INDEX_NAME, PARTIAL_NAME, ShardIndex, ShardInfo
from xlsr.data.utterance_index import Table
from xlsr.errors import AudioError, XlsrError
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE
from xlsr.text.normalize import nfc_respelled
from xlsr.text.vocab import tokenize

log = logging.getLogger(__name__)

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_TAR_BLOCK = 512


def parse_size(text: str) -> int:
    """'1GB' -> 10**9, '512MiB' -> 2**29, '2000000' -> 2000000; XlsrError naming --shard-size otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) * _UNITS[unit] < 1:
        raise XlsrError(f"--shard-size: {text!r} is not a size (e.g. 1GB, 500MB, 256MiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def encode_utterance(u: Utterance, key: str) -> tuple[dict, int]:
    """The tar sample of one utterance ({"__key__", "flac", "json"}) and its decoded length; AudioError if unreadable."""
    x = load_audio(u.audio)
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    meta = {"id": u.id, "lang": u.lang, "speaker": u.speaker, "num_samples": len(x)}
    meta.update({k: v for k, v in (("text", u.text), ("phones", u.phones)) if v is not None})
    return {"__key__": key, "flac": buf.getvalue(), "json": json.dumps(meta, ensure_ascii=False).encode()}, len(x)


def _tar_bytes(sample: dict) -> int:
    """Bytes a sample takes in a tar: a header block per member plus its data padded to whole blocks."""
    return sum(_TAR_BLOCK + -(-len(v) // _TAR_BLOCK) * _TAR_BLOCK for k, v in sample.items() if k != "__key__")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _OpenShard:
    """A shard being filled (under a temporary name until `close`)."""

    path: Path
    rel: str
    lang: str
    split: str
    first: int
    tmp: Path = field(init=False)
    size: int = 0
    utterances: int = 0
    num_samples: int = 0
    # label symbols per kind with their counts (a language's symbols are few), and what NFC respells in the texts
    symbols: dict[str, Counter] = field(default_factory=lambda: {"phones": Counter(), "chars": Counter()})
    respelled: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close())
        self.writer = TarWriter(self.file, encoder=False, mtime=0)  # mtime 0: equal inputs give equal tars

    def add(self, sample: dict, u: Utterance, num_samples: int) -> None:
        with _writing(self.path):
            self.writer.write(sample)
        self.size += _tar_bytes(sample)
        self.utterances += 1
        self.num_samples += num_samples
        if u.phones:
            self.symbols["phones"].update(tokenize(u.phones, "phones"))
        if u.text:
            self.symbols["chars"].update(tokenize(u.text, "chars"))
            self.respelled |= nfc_respelled(u.text)

    def close(self, end: int) -> ShardInfo:
        """Finish the temporary tar and return its index entry (`place` renames it into place)."""
        with _writing(self.path):
            self.writer.close()
            self.file.close()
        digest, size = _sha256(self.tmp), self.tmp.stat().st_size
        return ShardInfo(path=self.rel, lang=self.lang, split=self.split, utterances=self.utterances,
                         num_samples=self.num_samples, bytes=size, sha256=digest, lines=(self.first, end),
                         symbols={k: sorted(v) for k, v in self.symbols.items() if v},
                         symbol_counts={k: dict(sorted(v.items())) for k, v in self.symbols.items() if v},
                         nfc_respelled=sorted(self.respelled))

    def place(self) -> None:
        self.tmp.replace(self.path)

    def discard(self) -> None:
        for close in (self.writer.close, self.file.close):  # the file closes even when the tar's end cannot be written
            try:
                close()
            except OSError:
                pass  # the disk that ended the run fails these writes too: the error on its way is the one to say
        self.tmp.unlink(missing_ok=True)


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write()/close() names no file (a full disk: "no space left on device" alone): name `path`."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _previous_entries(out: Path) -> list[dict]:
    """Completed shards of earlier runs: from index.json, then index.partial.jsonl; the last entry of a path wins,
    and a retiring line (`{"path": ..., "retired": true}`) drops the entries before it."""
    records: list[dict] = []
    index = out / INDEX_NAME
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            sources = data.get("sources", {})
            records = [{**s, "source_sha256": sources.get(f"{s['split']}/{s['lang']}", {}).get("sha256"),
                        "shard_size": data.get("shard_size")} for s in data.get("shards", [])]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("%s: unreadable; every shard is written again", index)
            records = []
    records = [r for i, r in enumerate(records) if _well_formed(r, f"{index}: shards[{i}]")]
    by_path = {r["path"]: r for r in records}
    partial = out / PARTIAL_NAME
    if partial.is_file():
        for n, line in enumerate(partial.read_text(encoding="utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that shard is written again
            if isinstance(record, dict) and record.get("retired") and isinstance(record.get("path"), str):
                by_path.pop(record["path"], None)
            elif _well_formed(record, f"{partial}:{n}"):
                by_path.pop(record["path"], None)  # re-inserted last: the order of writing
                by_path[record["path"]] = record
    return list(by_path.values())


def _retire_index(out: Path, previous: list[dict]) -> None:
    """Move an earlier run's index.json into the partial index and remove it, before a tar is placed or removed: a
    run stopped from there on leaves no index.json, so no reader takes the tars for a finished corpus."""
    index = out / INDEX_NAME
    if index.is_file():
        write_jsonl(out / PARTIAL_NAME, previous)  # its entries and the partial index's, compacted
        index.unlink()


class _PartialIndex:
    """This run's lines of index.partial.jsonl, begun (an earlier index.json retired) at its first change to a tar."""

    def __init__(self, out: Path, previous: list[dict]) -> None:
        self.out, self.previous, self.file = out, previous, None

    def begin(self) -> None:
        """Call before placing or removing a tar: until then the earlier index still describes the folder."""
        if self.file is None:
            _retire_index(self.out, self.previous)  # `previous` holds all earlier lines: none was appended yet
            self.file = open(self.out / PARTIAL_NAME, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def append(self, record: dict) -> None:
        self.begin()
        with _writing(self.out / PARTIAL_NAME):
            self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _well_formed(record, where: str) -> bool:
    """Whether an earlier run's record is a valid index entry; if not, it is reported and its shard written again."""
    try:
        ShardInfo.from_dict(record, where)
    except XlsrError as exc:
        log.warning("%s; that shard is written again", exc)
        return False
    return True


def _kept_shards(previous: list[dict], out: Path, split: str, lang: str, digest: str, shard_size: int) -> list[ShardInfo]:
    """The leading complete shards of (split, lang) an earlier run wrote from the same manifest and shard size."""
    mine = {}
    for r in previous:
        if (r.get("split"), r.get("lang"), r.get("source_sha256"), r.get("shard_size")) == (split, lang, digest, shard_size):
            info = ShardInfo.from_dict(r, str(out / PARTIAL_NAME))
            if (out / info.path).is_file() and (out / info.path).stat().st_size == info.bytes:
                mine[info.lines[0]] = info
    kept, line = [], 0
    while line in mine:  # contiguous from the manifest's first line
        kept.append(mine[line])
        line = mine[line].lines[1]
    return kept


def shard_stem(lang: str) -> str:
    """The start of a language's shard names: its code with '.' and '/' as '_'."""
    return lang.replace(".", "_").replace("/", "_")


def _check_stems(data_dir: str | Path, jobs: list[tuple[str, str, Path]]) -> None:
    """Refuse two languages of one split whose shards would have the same names (e.g. sr.latn and sr_latn)."""
    owner: dict[tuple[str, str], str] = {}
    for split, lang, _ in jobs:
        other = owner.setdefault((split, shard_stem(lang)), lang)
        if other != lang:
            raise XlsrError(f"{data_dir}: languages {other!r} and {lang!r} would both write "
                            f"{split}/{shard_stem(lang)}-NNNNNN.tar; rename one of the folders")


@dataclass
class ShardReport:
    """What `write_shards` did."""

    index: ShardIndex
    written: int = 0
    kept: int = 0
    skipped: list[str] = field(default_factory=list)  # messages of the unreadable audio files this run read

    @property
    def unreadable(self) -> int:
        """Unreadable audio files left out of the index, this run's and those of the shards it kept."""
        return sum(source.get("skipped", 0) for source in self.index.sources.values())


def write_shards(data_dir: str | Path, out: str | Path, *, shard_size: int = 10**9,
                 splits: Iterable[str] = ("train", "dev"), max_bad_share: float = 0.05,
                 show_progress: bool = True) -> ShardReport:
    """Shard DIR/<lang>/<split>.jsonl into OUT/<split>/<lang>-NNNNNN.tar + OUT/index.json (module docstring)."""
    if not 0 <= max_bad_share <= 1:
        raise XlsrError(f"--max-bad-share must be in [0, 1], got {max_bad_share:g}")
    out = Path(out)
    jobs = []
    for split in splits:
        try:
            jobs += [(split, lang, path) for lang, path in find_manifests(data_dir, split).items()]
        except XlsrError:
            log.warning("%s: no %s manifests; that split is not sharded", data_dir, split)
    if not jobs:
        raise XlsrError(f"{data_dir}: no manifests <lang>/<split>.jsonl for split(s) {', '.join(splits)}")
    _check_stems(data_dir, jobs)
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_entries(out)
    report = ShardReport(ShardIndex(out, [], shard_size=shard_size))
    # every manifest's index before the first shard: bad lines beyond max_bad_share refuse the run before anything
    # is written; fewer are reported (all listed beside the manifest) and left out
    manifests = {(split, lang): open_manifest(path, max_bad_share=max_bad_share).tables[0] for split, lang, path in jobs}
    bar = progress(total=sum(len(u) for u in manifests.values()), desc="sharding", unit="utt",
                   disable=not show_progress)
    partial = _PartialIndex(out, previous)
    try:
        for split, lang, path in jobs:
            digest = _sha256(path)
            source = report.index.sources[f"{split}/{lang}"] = {"manifest": str(path), "sha256": digest}
            run = _Sharder(out, shard_size, max_bad_share, previous, partial, report, bar)
            shards = run.manifest(manifests[split, lang], split, lang, digest)
            source["skipped"] = len(manifests[split, lang]) - sum(s.utterances for s in shards)
            report.index.shards += shards
            _remove_stale(out, split, lang, {s.path for s in shards}, partial)
    finally:
        partial.close()
        bar.close()  # before an error's line, so the two do not share one
    write_json(out / INDEX_NAME, report.index.to_dict())  # atomic: a run that changed no tar replaces a readable index
    (out / PARTIAL_NAME).unlink(missing_ok=True)
    return report


@dataclass
class _Sharder:
    """The settings and outputs one `write_shards` call shares between its manifests."""

    out: Path
    shard_size: int
    max_bad_share: float
    previous: list[dict]
    partial: _PartialIndex
    report: ShardReport
    bar: object

    def manifest(self, utts: Table, split: str, lang: str, digest: str) -> list[ShardInfo]:
        """The shards of one manifest: the earlier run's complete ones, then new ones from the next line on."""
        out, report, bar = self.out, self.report, self.bar
        shards = _kept_shards(self.previous, out, split, lang, digest, self.shard_size)
        report.kept += len(shards)
        start = shards[-1].lines[1] if shards else 0
        bar.update(start)
        (out / split).mkdir(exist_ok=True)
        stem = shard_stem(lang)
        current: _OpenShard | None = None
        bad_before = len(report.skipped)

        def finish(end: int) -> None:
            info = current.close(end)
            self.partial.append({"path": info.path, "retired": True})  # an earlier entry of this path no longer holds
            current.place()
            shards.append(info)
            report.written += 1
            self.partial.append({**info.to_dict(), "source_sha256": digest, "shard_size": self.shard_size})

        try:
            for line in range(start, len(utts)):
                u = utts.utterance(line)  # one object at a time
                try:
                    sample, n = encode_utterance(u, f"{stem}-{line:09d}")
                except AudioError as exc:
                    report.skipped.append(str(exc))
                    log.warning("skipping unreadable audio: %s", exc)
                    bar.update(1)
                    continue
                if current is not None and current.utterances and current.size + _tar_bytes(sample) > self.shard_size:
                    finish(line)
                    current = None
                if current is None:
                    rel = f"{split}/{stem}-{len(shards):06d}.tar"
                    # its lines start where the previous shard's ended (0 for the first), unreadable ones included
                    current = _OpenShard(out / rel, rel, lang, split, first=shards[-1].lines[1] if shards else 0)
                current.add(sample, u, n)
                bar.update(1)
            if current is not None:
                finish(len(utts))
                current = None
        finally:
            if current is not None:
                current.discard()  # interrupted: the temporary tar goes, the complete shards stay
        # the whole manifest's, kept shards included: each shard's lines minus its utterances
        bad = len(utts) - sum(s.utterances for s in shards)
        if bad > self.max_bad_share * len(utts):
            last = (f"last: {report.skipped[-1]}" if len(report.skipped) > bad_before
                    else "reported by the earlier run that wrote its shards")
            # once a tar has changed the earlier index is retired: say how this folder becomes readable again
            kept = (f"; the shards completed so far stay, listed in {PARTIAL_NAME}: fix or drop those files, or "
                    f"raise --max-bad-share, and run it again" if self.partial.file is not None else "")
            raise XlsrError(f"{self.report.index.sources[f'{split}/{lang}']['manifest']}: {bad} of {len(utts)} audio "
                            f"files are unreadable, more than max_bad_share={self.max_bad_share:g} ({last}){kept}")
        return shards


def _remove_stale(out: Path, split: str, lang: str, keep: set[str], partial: _PartialIndex) -> None:
    """Shards of this language an earlier run wrote that the new index does not list (e.g. another shard size)."""
    stem = shard_stem(lang)
    for p in (out / split).glob(f"{stem}-*.tar"):
        if re.fullmatch(rf"{re.escape(stem)}-[0-9]{{6}}\.tar", p.name) and p.relative_to(out).as_posix() not in keep:
            partial.begin()
            p.unlink()

