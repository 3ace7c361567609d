"""Reading one shard: its utterances (FLAC bytes + JSON fields), then a verdict on the shard as a whole.

The tar is parsed by webdataset (`tar_file_expander`, `group_by_keys`) from a file whose bytes are hashed as
they stream by, so the sha256 check costs no second read. Hashing costs about as much CPU as parsing the tar, so
a process hashes a shard once: a later read of the same file, unchanged since (size, mtime, inode and device
as when its hash matched the index's), skips the hash. What can go wrong, and what the reader makes of it:
- the tar ends early or a member is cut (a truncated copy): the utterances before the damage are yielded, the
  rest (the index's count minus those read) are reported as bad files, with the shard's path;
- an utterance without its .flac or .json member, with unreadable JSON, or whose `num_samples` is not a positive
  integer (a 0-sample utterance: the same words as for a manifest line): that utterance is a bad file;
- every utterance read, but another sha256 or byte count than the index's (bytes damaged in place, or a copy cut
  in the end-of-archive padding): the shard is damaged, not another shard; a warning (no bad file: its members
  that decode are used, one that does not is a bad file where it is decoded), and the shard is not marked verified;
- more utterances than the index lists, or another language than the index's: the index describes another
  shard; that is fatal (`ShardEnd.fatal`, one line).
Each problem is a `Bad` with a key (the shard, or one utterance of it), so that the loader charges it once per
epoch however often an upsampled language re-reads the shard.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from webdataset.tariterators import group_by_keys, tar_file_expander

from xlsr.data.shard_index import ShardInfo
from xlsr.jsonl import parse_json

_CHUNK = 1 << 20
# path -> (file identity, sha256) of the shards whose hash matched their index entry in this process
_verified: dict[str, tuple[tuple[int, ...], str]] = {}


@dataclass
class ShardSample:
    """One utterance of a shard: its key, the encoded audio and the manifest fields; `shard` is the tar's path."""

    key: str
    flac: bytes
    meta: dict
    shard: str = ""


@dataclass(frozen=True)
class Bad:
    """A problem found in a shard: `count` bad files (0: a warning only), charged once per epoch per `key` (the
    shard's path, or the path and an utterance's key)."""

    key: str
    count: int
    message: str


@dataclass
class ShardEnd:
    """The verdict after the last utterance: how many were read, the problems, a fatal disagreement."""

    read: int
    bad: list[Bad] = field(default_factory=list)
    fatal: str | None = None

    @property
    def bad_count(self) -> int:
        return sum(b.count for b in self.bad)


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev


class _HashingFile:
    """A read-only file that counts, and hashes unless an unchanged copy was verified, every byte read through it."""

    def __init__(self, path: Path, sha256: str) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.identity = _identity(os.fstat(self.file.fileno()))
        self.verified = _verified.get(str(path)) == (self.identity, sha256)
        self.sha256, self.bytes = hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        if not self.verified:
            self.sha256.update(data)
        self.bytes += len(data)
        return data

    def matches(self, sha256: str) -> bool:
        """Whether the bytes read hash to `sha256` (or did when this unchanged file was verified before)."""
        return self.verified or self.sha256.hexdigest() == sha256

    def finish(self) -> None:
        """Read what tarfile left (the end-of-archive padding), so that the hash covers the whole file."""
        while self.read(_CHUNK):
            pass

    def close(self) -> None:
        self.file.close()


def read_shard(root: Path, info: ShardInfo) -> Iterator[ShardSample | ShardEnd]:
    """The shard's utterances in file order, then one `ShardEnd` (module docstring)."""
    path = root / info.path
    errors: list[Exception] = []

    def stop(exc: Exception) -> bool:
        errors.append(exc)
        return False  # stop at the first damage: what follows a cut member cannot be trusted

    try:
        stream = _HashingFile(path, info.sha256)
    except OSError as exc:
        yield ShardEnd(0, [Bad(str(path), info.utterances, f"{path}: cannot open ({exc.strerror})")])
        return
    end = ShardEnd(0)
    try:
        members = tar_file_expander([{"url": str(path), "stream": stream}], handler=stop)
        for sample in group_by_keys(members, handler=stop):
            flac, raw = sample.get("flac"), sample.get("json")
            key = sample.get("__key__", "?")
            meta = _parse_meta(raw)
            if flac is None or meta is None:
                end.bad.append(Bad(f"{path}:{key}", 1, f"{path}: utterance {key} lacks its .flac or a readable "
                                                       f".json member"))
                continue
            if isinstance(meta, str):  # readable, but not the fields of an utterance
                end.bad.append(Bad(f"{path}:{key}", 1, f"{path}: utterance {key}: {meta}"))
                continue
            if meta.get("lang") != info.lang:
                end.fatal = (f"{path}: utterance {key} is in language {meta.get('lang')!r}, the index lists the "
                             f"shard as {info.lang!r}; the index and the tars disagree (re-run `xlsr data shard`)")
                break
            end.read += 1
            yield ShardSample(key, flac, meta, str(path))
        if not errors and end.fatal is None:
            stream.finish()
    finally:
        stream.close()
    yield _verdict(path, info, end, errors, stream)


def _parse_meta(raw: bytes | None) -> dict | str | None:
    """The .json member's fields; None if missing or unreadable, what is wrong (a str) if it is no utterance's."""
    if raw is None:
        return None
    try:
        meta = parse_json(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested deeper than the parser goes
        return None
    if not isinstance(meta, dict):
        return None
    n = meta.get("num_samples")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:  # as a manifest line's (data/manifest.py)
        return f"num_samples must be a positive integer, got {n!r}"
    return meta


def _verdict(path: Path, info: ShardInfo, end: ShardEnd, errors: list[Exception], stream: _HashingFile) -> ShardEnd:
    """Complete `end` with what the shard as a whole says against the index."""
    if end.fatal is not None:
        return end
    seen = end.read + end.bad_count
    if seen > info.utterances:
        end.fatal = (f"{path}: holds more than the {info.utterances} utterances the index lists; the index and "
                     f"the tars disagree (re-run `xlsr data shard`)")
    elif errors or seen < info.utterances:
        missing = info.utterances - seen
        cause = _first_line(errors[0]) if errors else "the tar ends early"
        end.bad.append(Bad(str(path), missing, f"{path}: damaged after {seen} of {info.utterances} utterances "
                                               f"({cause}); {missing} skipped"))
    elif stream.bytes < info.bytes:
        end.bad.append(Bad(str(path), 0, f"{path}: {stream.bytes} of the {info.bytes} bytes the index lists, but "
                                         f"all {info.utterances} utterances read: cut after its last member"))
    elif not stream.matches(info.sha256):
        end.bad.append(Bad(str(path), 0, f"{path}: its sha256 differs from the index's (damaged in place); its "
                                         f"utterances that decode are used, the others skipped as bad files"))
    else:
        _verified[str(path)] = (stream.identity, info.sha256)
    return end


def _first_line(exc: Exception) -> str:
    """The message of a tar error without what webdataset appends (the file object, its URL)."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.split(" @ ")[0].splitlines()[0][:100] if text else type(exc).__name__
