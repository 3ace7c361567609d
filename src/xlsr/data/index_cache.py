"""Building a manifest's utterance index once and keeping it beside the manifest.

`open_manifest(path)` returns the manifest's `UtteranceIndex`. The first call reads the manifest in chunks and
writes the index to a hidden folder beside it, `.<name>.jsonl.index/` (atomically: a temporary folder, then a
rename); later calls memory-map it. The index is rebuilt when the manifest's size, mtime or a digest of its first
and last 64 KiB differ from what the index recorded. Where the manifest's folder is read-only the index goes to
$XLSR_CACHE/index (one note), and where that fails too it is built in a temporary folder for this process only.

Bad lines (invalid JSON, a missing or invalid field) are skipped and reported as `FILE:LINE: problem`; every
one is listed in the index folder's bad_lines.txt. When more than `max_bad_share` of the lines are bad the
manifest is refused with one line naming the first.

The index keeps the fingerprint it was built from, so a long run can tell when its manifest has since changed
(`changed_manifests`: a re-import into the same folder swaps manifest and audio under it); the run itself goes on
reading its own index until it is started again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from xlsr.atomic import write_dir
from xlsr.data.manifest import check_manifest_file, parse_record, split_manifests
from xlsr.data.utterance_index import (
    CODES,
    STRINGS,
    Table,
    TableWriter,
    UtteranceIndex,
    open_table,
    read_meta,
)
from xlsr.errors import ManifestError

log = logging.getLogger(__name__)


class TooManyBadLines(ManifestError):
    """A manifest with more bad lines than max_bad_share allows."""

CHUNK_ROWS = 65536  # lines parsed before their columns are written out: bounds the memory of a build
DIGEST_BYTES = 65536  # from each end of the manifest, for the cheap content check
BAD_EXAMPLES = 3  # bad lines quoted in a message (all of them are in bad_lines.txt)


def sidecar(manifest: Path) -> Path:
    """The index folder beside a manifest: DIR/.<name>.index."""
    return manifest.with_name(f".{manifest.name}.index")


def user_cache(manifest: Path) -> Path:
    """The index folder for a manifest in a read-only folder: $XLSR_CACHE/index/<hash of its path>."""
    base = Path(os.environ.get("XLSR_CACHE", Path.home() / ".cache" / "xlsr")) / "index"
    return base / (hashlib.blake2b(str(manifest.resolve()).encode(), digest_size=10).hexdigest() + "-" + manifest.name)


def fingerprint(manifest: Path) -> dict:
    """Size, mtime_ns and a digest of the first and last DIGEST_BYTES: what invalidates an index."""
    stat = manifest.stat()
    digest = hashlib.blake2b(digest_size=16)
    with open(manifest, "rb") as f:
        digest.update(f.read(DIGEST_BYTES))
        if stat.st_size > DIGEST_BYTES:
            f.seek(max(DIGEST_BYTES, stat.st_size - DIGEST_BYTES))
            digest.update(f.read(DIGEST_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "digest": digest.hexdigest()}


def manifest_stamps(utts: UtteranceIndex) -> dict[str, dict]:
    """The fingerprint each manifest of `utts` had when its index was built, by manifest path, resolved (another
    spelling of it, relative or through a link, is the same manifest); a table made from objects has none."""
    return {os.path.realpath(t.source): t.meta["manifest"] for t in utts.tables if t.source and "manifest" in t.meta}


def changed_manifests(utts: UtteranceIndex) -> list[str]:
    """The manifests of `utts` that differ now (or are gone) from what their index was built from. It reads both
    ends of each manifest: for a stop or an epoch's start, not for every batch."""
    changed = []
    for source, stamp in manifest_stamps(utts).items():
        try:
            now = fingerprint(Path(source))
        except OSError:
            now = None
        if now != stamp:
            changed.append(source)
    return changed


def open_manifest(path: str | Path, *, max_bad_share: float = 0.0) -> UtteranceIndex:
    """The index of one JSONL manifest, built on first use and cached (module docstring)."""
    path = Path(path)
    check_manifest_file(path)  # a folder where one manifest belongs (fine-tuning's --train and --dev take files)
    _check_text(path)
    table = _open_table(path)
    check_bad_lines(table, max_bad_share)
    return UtteranceIndex([table])


def open_split(data_dir: str | Path, split: str, langs: list[str] | None = None, *,
               max_bad_share: float = 0.0) -> UtteranceIndex:
    """The index of `split` for `langs` (default: every language found) from DIR/<lang>/<split>.jsonl."""
    by_folder = split_manifests(data_dir, split, langs)
    tables = [open_manifest(p, max_bad_share=max_bad_share).tables[0] for p in by_folder.values()]
    for (folder, path), table in zip(by_folder.items(), tables):
        if len(table) == 0:
            log.warning("%s: no utterances; that language takes no part in this split", path)
        elif list(table.langs) != [folder]:  # a manifest copied to another language's folder, a wrong --lang
            log.warning("%s: its lines say language %s, not %s (its folder's name): they are trained, sampled and "
                        "scored as %s", path, "/".join(table.langs), folder, "/".join(table.langs))
    return UtteranceIndex(tables)


def _check_text(path: Path) -> None:
    """ManifestError for a file whose start holds a NUL byte, which no JSONL text has: an audio file, an archive or
    a checkpoint given as a manifest is named in one line, before an index of its "lines" is built beside it."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    if b"\0" in head:
        raise ManifestError(f"{path}: not a JSONL manifest (it holds NUL bytes: audio, an archive, or text in UTF-16?)")
    lines = [line for line in head.lstrip(b"\xef\xbb\xbf").splitlines() if line.strip()][:2]
    if lines and not any(line.lstrip().startswith(b"{") for line in lines) and (
            any(b"\t" in line for line in lines) or lines[0].count(b",") >= 2):
        # a fairseq .tsv (its first line the audio root), Common Voice's, a .csv: every line would be a bad line (a
        # JSON object on the second line: a manifest whose first line is bad, judged by max_bad_share as any other)
        raise ManifestError(f"{path}: a table (tab- or comma-separated), not a JSONL manifest (one JSON object per "
                            f"line); make one with `xlsr data import fairseq|commonvoice|folder` (docs/importing.md)")


def check_bad_lines(table: Table, max_bad_share: float) -> None:
    """Warn about the skipped bad lines of a manifest, or refuse it when they are more than `max_bad_share`."""
    bad, lines = table.meta.get("bad", 0), table.meta.get("lines", 0)
    if not bad:
        return
    examples = table.meta["bad_examples"]
    listed = Path(table.folder or "") / "bad_lines.txt"
    if bad > max_bad_share * lines:
        raise TooManyBadLines(f"{examples[0]} ({bad} of {lines} lines are bad, more than max_bad_share="
                            f"{max_bad_share:g}; all are listed in {listed})")
    log.warning("%s: skipping %d of %d lines that are not valid utterances (e.g. %s; all are listed in %s)",
                table.source, bad, lines, "; ".join(examples), listed)


def _open_table(path: Path) -> Table:
    source, root = str(path), str(path.resolve().parent)
    stamp = fingerprint(path)
    for folder in (sidecar(path), user_cache(path)):
        meta = read_meta(folder)
        if meta is not None and meta.get("manifest") == stamp:
            try:
                return open_table(folder, source, root)
            except OSError:
                break  # damaged: rebuilt below
    try:
        return _build_into(sidecar(path), path, stamp)
    except OSError as exc:
        fallback = user_cache(path)
        log.warning("note: cannot write the utterance index beside %s (%s); keeping it in %s", path,
                    exc.strerror or exc, fallback)
    try:
        return _build_into(fallback, path, stamp)
    except OSError as exc:
        log.warning("note: cannot write the utterance index in %s either (%s); building it for this run only",
                    fallback, exc.strerror or exc)
    return _build_temporary(path, stamp)


def _build_into(folder: Path, path: Path, stamp: dict) -> Table:
    try:
        write_dir(folder, lambda tmp: build_index(path, tmp, stamp))
    except OSError:
        if read_meta(folder) is None or read_meta(folder).get("manifest") != stamp:
            raise
        # another process (a rank of the same run) published the same index first
    return open_table(folder, str(path), str(path.resolve().parent))


def _build_temporary(path: Path, stamp: dict) -> Table:
    """Built in a temporary folder, read into memory, folder removed."""
    tmp = Path(tempfile.mkdtemp(prefix="xlsr-index-"))
    try:
        build_index(path, tmp, stamp)
        table = open_table(tmp, str(path), str(path.resolve().parent))
        table.codes = {k: np.array(v) for k, v in table.codes.items()}
        for column in (*table.strings.values(), table.speakers):
            column.data, column.offsets = np.array(column.data), np.array(column.offsets)
            column.present = None if column.present is None else np.array(column.present)
        table.folder = None
        return table
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_index(path: Path, folder: Path, stamp: dict) -> None:
    """Parse manifest `path` in chunks into the columns of an index in `folder` (bad lines skipped, listed)."""
    folder.chmod(0o755)  # a temporary folder is private; an index beside a shared corpus serves every user
    writer = TableWriter(folder)
    langs: dict[str, int] = {}
    speakers: dict[str, int] = {}
    chunk = _empty_chunk()
    lines = bad = 0
    examples: list[str] = []
    try:
        with open(path, "rb") as f, open(folder / "bad_lines.txt", "w", encoding="utf-8") as bad_lines:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                lines += 1
                record, problem = parse_record(raw)
                if problem:
                    bad += 1
                    message = f"{path}:{number}: {problem}"
                    bad_lines.write(message + "\n")
                    if len(examples) < BAD_EXAMPLES:
                        examples.append(message)
                    continue
                _add(chunk, record, number, langs, speakers)
                if len(chunk["line"]) == CHUNK_ROWS:
                    _flush(writer, chunk)
            _flush(writer, chunk)
    except BaseException:
        writer.abort()
        raise
    writer.close(list(langs), list(speakers), {"manifest": stamp, "lines": lines, "bad": bad,
                                               "bad_examples": examples})


def _empty_chunk() -> dict[str, list]:
    return {name: [] for name in (*CODES, *STRINGS)}


def _add(chunk: dict[str, list], record: dict, number: int, langs: dict[str, int], speakers: dict[str, int]) -> None:
    """One valid line into the chunk's lists; language and speaker as codes (as `read_manifest` reads them)."""
    chunk["num_samples"].append(record["num_samples"])
    chunk["lang"].append(langs.setdefault(record["lang"], len(langs)))
    chunk["speaker"].append(speakers.setdefault(record.get("speaker") or "unknown", len(speakers)))
    chunk["line"].append(number)
    chunk["audio"].append(record["audio"])
    chunk["id"].append(record.get("id") or None)  # no id: the audio file's stem, derived on access
    chunk["text"].append(record.get("text"))
    chunk["phones"].append(record.get("phones"))


def _flush(writer: TableWriter, chunk: dict[str, list]) -> None:
    if chunk["line"]:
        writer.append({name: np.array(chunk[name]) for name in CODES}, {name: chunk[name] for name in STRINGS})
    for values in chunk.values():
        values.clear()
