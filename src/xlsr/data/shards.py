"""Writing a sharded corpus: WebDataset-style tars from our manifests (`xlsr data shard`).

Per utterance two tar members with one key: `<key>.flac` (16 kHz mono, 16-bit FLAC of what `load_audio`
gives) and `<key>.json` (the manifest fields: id, lang, speaker, num_samples, and text/phones when present;
num_samples is the decoded length). One language per shard; a shard closes before it would pass `shard_size`
bytes. The index (data/shard_index.py) lists every shard with its language, split, counts, hours, byte size and
sha256, and what fine-tuning needs to know of its labels: their symbols with their counts, the characters NFC
respells in their texts, and the runs of their texts that NFC could join (a letter and its marks) with their counts.

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

With `workers`, the audio is decoded and encoded to FLAC in that many processes (`DecoderPool`,
data/decoder_pool.py; the work, `flac_or_reason`, needs only the path and does not import torch) while this process
writes the tars in manifest order, exactly as it would alone: the tars, the indexes and the messages are the same
bytes. A decoder that kills its worker (a segfault on a damaged file) costs that file, which is unreadable audio
like any other ("<path>: decoder crashed (killed by SIGSEGV)"), and a fresh worker takes the rest; so does one
that hangs on a file past `decode_timeout` seconds ("<path>: decoder hung (...)"); a decoder that
raises anything else is that file's failure too ("<path>: decoder failed (MemoryError: ...)"), in this process as
in a worker. Files are decoded ahead of the writer up to AHEAD_SECONDS of audio per worker (by the manifest's
lengths), whose FLAC waits here. A stop (Ctrl-C, a kill) ends the workers with the run (they ignore SIGINT and
SIGTERM: the parent stops them) and leaves what a run in one process leaves.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from xlsr.atomic import write_json, write_jsonl
from xlsr.data.audio import load_audio
from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S, DecoderPool, decoder_failed
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import Utterance, find_manifests
from xlsr.data.shard_index import FORMAT, INDEX_NAME, PARTIAL_NAME, ShardIndex, ShardInfo
from xlsr.data.utterance_index import Table
from xlsr.errors import AudioError, XlsrError
from xlsr.jsonl import parse_json
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE
from xlsr.text.normalize import nfc_respelled
from xlsr.text.vocab import composing_runs, tokenize

log = logging.getLogger(__name__)

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_TAR_BLOCK = 512
# audio a worker may have decoded ahead of the tar writer, by the manifest's lengths: 960,000 samples, whose 16-bit
# FLAC (~1-2 MB) waits in the writer; enough files that no worker idles while the writer finishes a shard
AHEAD_SECONDS = 60
Encoded = tuple[bytes, int] | str  # an audio file's FLAC and decoded length, or the line saying why it has none


def parse_size(text: str) -> int:
    """'1GB' -> 10**9, '512MiB' -> 2**29, '2000000' -> 2000000; XlsrError naming --shard-size otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) * _UNITS[unit] < 1:
        raise XlsrError(f"--shard-size: {text!r} is not a size (e.g. 1GB, 500MB, 256MiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def flac_or_reason(path: str) -> Encoded:
    """The 16-bit FLAC of `load_audio(path)` and its length in samples, or the line saying why it has none (its
    AudioError's message). What a decoding worker runs: it needs the path only."""
    try:
        x = load_audio(path)
    except AudioError as exc:
        return str(exc)
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue(), len(x)


def tar_sample(u: Utterance, key: str, flac: bytes, num_samples: int) -> dict:
    """The tar sample of one utterance: {"__key__", "flac", "json" (its manifest fields, num_samples decoded)}."""
    meta = {"id": u.id, "lang": u.lang, "speaker": u.speaker, "num_samples": num_samples}
    meta.update({k: v for k, v in (("text", u.text), ("phones", u.phones)) if v is not None})
    return {"__key__": key, "flac": flac, "json": json.dumps(meta, ensure_ascii=False).encode()}


def encode_utterance(u: Utterance, key: str, encode: Callable[[str], Encoded] = flac_or_reason) -> tuple[dict, int]:
    """The tar sample of one utterance and its decoded length; AudioError if unreadable."""
    encoded = encode(u.audio)
    if isinstance(encoded, str):
        raise AudioError(encoded)
    return tar_sample(u, key, *encoded), encoded[1]


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
    # label symbols per kind with their counts (a language's symbols are few), what NFC respells in the texts, and
    # the texts' runs that NFC could join (a letter and its marks: few too) with their counts
    symbols: dict[str, Counter] = field(default_factory=lambda: {"phones": Counter(), "chars": Counter()})
    respelled: set[str] = field(default_factory=set)
    runs: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        # imported here: webdataset imports torch, which a decoding worker (importing this module) need not
        from webdataset import TarWriter

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
            chars = tokenize(u.text, "chars")
            self.symbols["chars"].update(chars)
            self.respelled |= nfc_respelled(u.text)
            # the runs a vocabulary judges whole, by its own rule (data/shard_index.py's char_runs)
            self.runs.update("".join(run) for run in composing_runs(chars) if len(run) > 1)

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
                         nfc_respelled=sorted(self.respelled), char_runs=dict(sorted(self.runs.items())))

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


def _previous_entries(out: Path) -> tuple[list[dict], set[str]]:
    """Completed shards of earlier runs: from index.json, then index.partial.jsonl; the last entry of a path wins,
    and a retiring line (`{"path": ..., "retired": true}`) drops the entries before it. Also every path those files
    name, malformed and retired entries included: the tars this writer may replace or remove (no other). An
    index.json that is not an xlsr shard index (another tool's, a user's file) is refused, not replaced."""
    records: list[dict] = []
    named: set[str] = set()
    index = out / INDEX_NAME
    if index.is_file():
        try:
            data = parse_json(index.read_text(encoding="utf-8"))
        except ValueError as exc:
            what = f"not JSON: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise XlsrError(f"{index}: not an xlsr shard index ({what}); move it elsewhere, or shard into another "
                            f"--out") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise XlsrError(f"{index}: not an xlsr shard index (format is not {FORMAT!r}); move it elsewhere, or "
                            f"shard into another --out")
        shards = data.get("shards", [])
        named |= _paths(shards if isinstance(shards, list) else [])
        try:
            sources = data.get("sources", {})
            records = [{**s, "source_sha256": sources.get(f"{s['split']}/{s['lang']}", {}).get("sha256"),
                        "shard_size": data.get("shard_size")} for s in shards]
        except (KeyError, TypeError, AttributeError):
            log.warning("%s: unreadable; every shard is written again", index)
            records = []
    records = [r for i, r in enumerate(records) if _well_formed(r, f"{index}: shards[{i}]")]
    by_path = {r["path"]: r for r in records}
    partial = out / PARTIAL_NAME
    if partial.is_file():
        for n, line in enumerate(partial.read_text(encoding="utf-8").splitlines(), 1):
            try:
                record = parse_json(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that shard is written again
            named |= _paths([record])
            if isinstance(record, dict) and record.get("retired") and isinstance(record.get("path"), str):
                by_path.pop(record["path"], None)
            elif _well_formed(record, f"{partial}:{n}"):
                by_path.pop(record["path"], None)  # re-inserted last: the order of writing
                by_path[record["path"]] = record
    return list(by_path.values()), named


def _paths(records: list) -> set[str]:
    """The `path` of each record that has one (a string)."""
    return {r["path"] for r in records if isinstance(r, dict) and isinstance(r.get("path"), str)}


def _retire_index(out: Path, previous: list[dict], named: set[str]) -> None:
    """Move an earlier run's index.json into the partial index and remove it, before a tar is placed or removed: a
    run stopped from there on leaves no index.json, so no reader takes the tars for a finished corpus."""
    index = out / INDEX_NAME
    if index.is_file():
        # its entries and the partial index's, compacted; a path only a malformed or retired entry named stays named,
        # as a retired one, so that the next run may still replace or remove its tar
        retired = [{"path": path, "retired": True} for path in sorted(named - _paths(previous))]
        write_jsonl(out / PARTIAL_NAME, [*retired, *previous])
        index.unlink()


class _PartialIndex:
    """This run's lines of index.partial.jsonl, begun (an earlier index.json retired) at its first change to a tar."""

    def __init__(self, out: Path, previous: list[dict], named: set[str]) -> None:
        self.out, self.previous, self.named, self.file = out, previous, named, None

    def begin(self) -> None:
        """Call before placing or removing a tar: until then the earlier index still describes the folder."""
        if self.file is None:
            _retire_index(self.out, self.previous, self.named)  # all earlier lines: none was appended yet
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


def _check_out(data_dir: Path, out: Path) -> None:
    """Refuse an --out that would make the corpus read as shards: DIR itself (its index.json would hide its
    manifests from every reader), or the folder just above DIR (DIR would read as the shard split OUT/<name>)."""
    data, target = data_dir.resolve(), out.resolve()
    if target == data:
        raise XlsrError(f"--out {out}: is the data folder itself; its index.json would hide the manifests from every "
                        f"reader; give another folder")
    if data.parent == target:
        raise XlsrError(f"--out {out}: holds the data folder {data_dir}, which would then read as its shard split "
                        f"{data.name!r}; give another folder")


def _check_unnamed(out: Path, jobs: list[tuple[str, str, Path]], named: set[str]) -> None:
    """Refuse, before anything is written, a tar named as this run names its shards that no earlier run into OUT
    wrote (its index and partial index do not name it): a run would replace it, or leave it beside the index."""
    for split, lang, _ in jobs:
        for p in _shard_files(out, split, lang):
            if p.relative_to(out).as_posix() not in named:
                raise XlsrError(f"{p}: a tar no earlier `xlsr data shard` run into {out} wrote (its index does not "
                                f"name it), which this run would overwrite or leave unlisted; move it elsewhere, or "
                                f"shard into another --out")


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
                 splits: Iterable[str] = ("train", "dev"), max_bad_share: float = 0.05, workers: int = 0,
                 encode: Callable[[str], Encoded] | None = None, decode_timeout: float | None = DEFAULT_TIMEOUT_S,
                 show_progress: bool = True) -> ShardReport:
    """Shard DIR/<lang>/<split>.jsonl into OUT/<split>/<lang>-NNNNNN.tar + OUT/index.json (module docstring), the
    audio decoded in `workers` processes (0: in this one, with no crash isolation; a file one takes more than
    `decode_timeout` seconds on, None: no limit, is stopped and skipped as unreadable). `encode`: flac_or_reason unless
    given (tests: a module-level function, which a worker imports by name)."""
    if not 0 <= max_bad_share <= 1:
        raise XlsrError(f"--max-bad-share must be in [0, 1], got {max_bad_share:g}")
    if workers < 0:
        raise XlsrError(f"--workers: must be 0 or more, got {workers}")
    out = Path(out)
    splits = list(dict.fromkeys(splits))  # a split named twice is sharded once
    if not splits:
        raise XlsrError("--splits: give at least one split name")
    if not Path(data_dir).is_dir():
        raise XlsrError(f"{data_dir}: no such data folder")
    _check_out(Path(data_dir), out)
    jobs = []
    for split in splits:
        try:
            jobs += [(split, lang, path) for lang, path in find_manifests(data_dir, split).items()]
        except XlsrError:
            log.warning("%s: no %s manifests; that split is not sharded", data_dir, split)
    if not jobs:
        raise XlsrError(f"{data_dir}: no manifests <lang>/<split>.jsonl for split(s) {', '.join(splits)}")
    _check_stems(data_dir, jobs)
    previous, named = _previous_entries(out) if out.is_dir() else ([], set())
    sources = _previous_sources(out)  # now: index.json is moved into index.partial.jsonl before a tar is replaced
    _check_unnamed(out, jobs, named)
    report = ShardReport(ShardIndex(out, [], shard_size=shard_size))
    # every manifest's index before the first shard: bad lines beyond max_bad_share refuse the run before anything
    # is written (OUT included); fewer are reported (all listed beside the manifest) and left out
    manifests = {(split, lang): open_manifest(path, max_bad_share=max_bad_share).tables[0] for split, lang, path in jobs}
    out.mkdir(parents=True, exist_ok=True)
    total = sum(len(u) for u in manifests.values())
    bar = progress(total=total, desc="sharding", unit="utt", disable=not show_progress)
    # its workers start when the first utterance is to be encoded (none when every shard is kept)
    pool = (DecoderPool(min(workers, total), encode or flac_or_reason, failed=str, timeout=decode_timeout)
            if workers and total else None)
    # in this process: encode_utterance, looked up here (tests stand in for it)
    encode_here = encode_utterance if encode is None else lambda u, key: encode_utterance(u, key, encode)
    partial = _PartialIndex(out, previous, named)
    try:
        for split, lang, path in jobs:
            digest = _sha256(path)
            source = report.index.sources[f"{split}/{lang}"] = {"manifest": str(path), "sha256": digest}
            run = _Sharder(out, shard_size, max_bad_share, previous, partial, report, bar, pool, encode_here)
            shards = run.manifest(manifests[split, lang], split, lang, digest)
            source["skipped"] = len(manifests[split, lang]) - sum(s.utterances for s in shards)
            report.index.shards += shards
            _remove_stale(out, split, lang, {s.path for s in shards}, named, partial)
        # the splits not sharded this time stay as an earlier run wrote them, listed with their sources
        _carry_other_splits(out, previous, sources, splits, shard_size, report.index)
        # the tars of languages no longer in a sharded split, or of splits written with another shard size: no
        # longer listed, they would only make readers refuse the split folder, and the next run could not tell them
        # from a user's files
        _remove_unlisted(out, named, {s.path for s in report.index.shards}, partial)
    finally:
        if pool is not None:
            pool.close()  # a stop included: no worker outlives the run
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
    pool: DecoderPool | None  # None: encoded in this process, by `encode_here`
    encode_here: Callable[[Utterance, str], tuple[dict, int]]

    def encoded(self, utts: Table, start: int, stem: str) -> Iterator[tuple[int, Utterance, tuple[dict, int] | str]]:
        """Each line of `utts` from `start` on, in order, with its utterance and its tar sample and decoded length,
        or the line saying why its audio has none (its decoder raised, or killed its worker)."""
        if start == len(utts):
            return
        if self.pool is None:
            for line in range(start, len(utts)):
                u = utts.utterance(line)  # one object at a time
                try:
                    encoded = self.encode_here(u, f"{stem}-{line:09d}")
                except AudioError as exc:
                    encoded = str(exc)
                except Exception as exc:  # noqa: BLE001 - as a worker takes it: this file's failure, in one line
                    encoded = decoder_failed(u.audio, exc)
                yield line, u, encoded
            return
        sizes = utts.codes["num_samples"][start:]  # the manifest's lengths bound what waits here
        ahead = self.pool.size * AHEAD_SECONDS * SAMPLE_RATE
        for line, got in zip(range(start, len(utts)), self.pool.map_in_order(_AudioPaths(utts, start), sizes, ahead)):
            u = utts.utterance(line)
            yield line, u, got if isinstance(got, str) else (tar_sample(u, f"{stem}-{line:09d}", *got), got[1])

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
            for line, u, encoded in self.encoded(utts, start, stem):
                if isinstance(encoded, str):
                    report.skipped.append(encoded)
                    log.warning("skipping unreadable audio: %s", encoded)
                    bar.update(1)
                    continue
                sample, n = encoded
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


class _AudioPaths(Sequence):
    """The audio paths of a manifest's lines from `start` on, read from its index as they are asked for."""

    def __init__(self, utts: Table, start: int) -> None:
        self.utts, self.start = utts, start

    def __len__(self) -> int:
        return len(self.utts) - self.start

    def __getitem__(self, k: int) -> str:
        return self.utts.audio(self.start + k)


def _remove_stale(out: Path, split: str, lang: str, keep: set[str], named: set[str], partial: _PartialIndex) -> None:
    """Shards of this language an earlier run wrote (its index or partial index `named` them) that the new index
    does not list (e.g. another shard size); a tar no earlier run named is not this writer's to remove."""
    for p in _shard_files(out, split, lang):
        rel = p.relative_to(out).as_posix()
        if rel in named and rel not in keep:
            partial.begin()
            p.unlink()


def _carry_other_splits(out: Path, previous: list[dict], sources: dict, splits: list[str], shard_size: int,
                        index: ShardIndex) -> None:
    """Add to `index` the shards (and `sources`, the earlier index's) of earlier runs of splits not in `splits`, where
    their tar is there with its listed size and was written with the same `shard_size` (what a later run of that
    split keeps). A language of such a split that loses a shard so, or a split written with another shard size, is
    left out with a warning saying how to have it again."""
    kept: dict[tuple[str, str], list[ShardInfo]] = {}
    lost: dict[tuple[str, str], str] = {}
    resized: set[str] = set()
    for r in previous:
        if r["split"] in splits:
            continue
        if r.get("shard_size") != shard_size:
            resized.add(r["split"])
            continue
        info = ShardInfo.from_dict(r, str(out / INDEX_NAME))
        if (out / info.path).is_file() and (out / info.path).stat().st_size == info.bytes:
            kept.setdefault((info.split, info.lang), []).append(info)
        else:
            lost.setdefault((info.split, info.lang), info.path)
    for (split, lang), infos in sorted(kept.items()):
        if (split, lang) in lost:
            continue  # a language is listed whole or not at all: readers take an index's shards as all its audio
        index.shards += infos
        if f"{split}/{lang}" in sources:
            index.sources[f"{split}/{lang}"] = sources[f"{split}/{lang}"]
    for (split, lang), path in sorted(lost.items()):
        log.warning("%s: listed by the earlier index, missing or of another size now: %s of split %s is left out of "
                    "the index (shard it again: --splits %s)", out / path, lang, split, ",".join([*splits, split]))
    for split in sorted(resized - set(splits)):
        log.warning("%s/%s: its shards were written with another --shard-size and are removed (shard it again: "
                    "--splits %s)", out, split, ",".join([*splits, split]))


def _previous_sources(out: Path) -> dict:
    """The `sources` of the earlier index.json ({} where there is none: an earlier run that did not finish)."""
    try:
        data = parse_json((out / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    sources = data.get("sources") if isinstance(data, dict) else None
    return sources if isinstance(sources, dict) else {}


def _remove_unlisted(out: Path, named: set[str], listed: set[str], partial: _PartialIndex) -> None:
    """The tars an earlier run wrote (`named`, each `<split>/<stem>-NNNNNN.tar`) that the new index does not list."""
    for rel in sorted(named - listed):
        split, _, name = rel.partition("/")
        if split in ("", ".", "..") or not re.fullmatch(r"[^/]+-[0-9]{6}\.tar", name):
            continue  # not a path this writer gives its shards
        if (out / rel).is_file():
            partial.begin()
            (out / rel).unlink()


def _shard_files(out: Path, split: str, lang: str) -> list[Path]:
    """OUT/<split>/<stem>-NNNNNN.tar: the files named as this writer names a language's shards."""
    stem = shard_stem(lang)
    return sorted(p for p in (out / split).glob(f"{stem}-*.tar")
                  if re.fullmatch(rf"{re.escape(stem)}-[0-9]{{6}}\.tar", p.name))

