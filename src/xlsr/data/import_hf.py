"""Hugging Face datasets on disk -> our manifests: the Hub's Parquet files or a `save_to_disk` folder (Arrow).

Common Voice and FLEURS are distributed there with each row's audio embedded as an Audio feature, stored
as struct<bytes: binary, path: string>. pyarrow reads the files a record batch at a time (a 100 GB dataset
never sits in memory); soundfile decodes the bytes (no torchcodec, no `datasets` decoding), soxr brings
them to 16 kHz mono and each row is written as FLAC under DIR/<lang>/audio. Every file's columns are checked
before the first row is decoded, so a file without the audio column is refused before anything is written. A
damaged file among them is skipped and counted against max_bad_share: as one item when it cannot be opened, as
its unread rows when it breaks off after some (a Parquet footer tells how many).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xlsr.data.audio import decode_audio, load_audio
from xlsr.data.import_writer import DEFAULT_MAX_BAD_SHARE, ImportRefused, ImportSummary, ImportWriter
from xlsr.data.importers import VALIDATION_NAMES
from xlsr.data.languages import language_code
from xlsr.data.manifest import Utterance
from xlsr.errors import AudioError, XlsrError, listing
from xlsr.jsonl import parse_json
from xlsr.progress import progress

# split names in file and folder names (train-00000-of-00004.parquet, en/validation/0000.parquet) -> ours
SPLIT_NAMES = {"train": "train", **VALIDATION_NAMES, "dev": "dev", "test": "test",
               "validated": "validated", "invalidated": "invalidated", "other": "other"}
SPEAKER_COLUMNS = ("client_id", "speaker_id", "speaker")  # Common Voice's, then other datasets' usual names
BATCH_ROWS = 64  # rows decoded together: at ~1 MB of audio bytes a row, a batch stays well under 100 MB


@dataclass(frozen=True)
class Columns:
    """The columns an import reads; None: not read (text: audio only; lang: given by the user)."""

    audio: str
    text: str | None
    lang: str | None
    speaker: str | None
    lang_names: tuple[str, ...] | None = None  # a ClassLabel language column's names, by class id (FLEURS' lang_id)

    def names(self) -> list[str]:
        return [c for c in (self.audio, self.text, self.lang, self.speaker) if c is not None]


def find_tables(src: str | Path) -> list[Path]:
    """The Parquet files under `src` (or `src` itself), else its Arrow files (`save_to_disk`), sorted."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise XlsrError(f"{src}: no such file or folder")
    parquet = sorted(src.rglob("*.parquet"))
    # cache-*.arrow files are `datasets`' map()/filter() caches beside a dataset, not its rows
    arrow = sorted(p for p in src.rglob("*.arrow") if not p.name.startswith("cache-"))
    if not parquet and not arrow:
        raise XlsrError(f"{src}: no .parquet or .arrow files (a Hub dataset's parquet files or a save_to_disk folder)")
    return parquet or arrow


def split_of(path: Path, src: Path) -> str:
    """The split a file holds, from its name (`train-00000-of-00004`) or the nearest folder named like one. A name
    that qualifies its split keeps the qualifier (LibriSpeech's `test.clean` and `test.other`, `train.clean.100`:
    our `test.clean`, `test.other`, `train.clean.100`), so that splits the dataset keeps apart are not merged; the
    Hub's parquet converter's `partial-` prefix (a split converted in part) is dropped."""
    names = [path.stem]  # train.clean.100-00000-of-00012-<hash>: up to the first '-'
    names += [p.name for p in path.parents if p != src and src in p.parents]
    for name in names:
        head, *qualifier = name.removeprefix("partial-").split("-")[0].split(".")
        if head.lower() in SPLIT_NAMES:
            return ".".join([SPLIT_NAMES[head.lower()], *filter(None, qualifier)])
    raise XlsrError(f"{path}: no split name ({', '.join(SPLIT_NAMES)}) in its name or folders; "
                    f"pass --split instead of --split-from-filename")


def open_table(path: Path) -> tuple[pa.Schema, int | None]:
    """A Parquet or Arrow (stream or file) table's schema and, when its footer tells, its row count."""
    try:
        if path.suffix == ".parquet":
            meta = pq.ParquetFile(path).metadata
            return meta.schema.to_arrow_schema(), meta.num_rows
        with pa.memory_map(str(path)) as source:
            return _arrow_reader(source).schema, None
    except (pa.ArrowException, OSError) as exc:
        raise XlsrError(f"{path}: not a readable {path.suffix[1:]} file ({str(exc).splitlines()[0][:120]})") from None


def _arrow_reader(source):
    """`save_to_disk` writes the Arrow stream format; a file written with the random-access format is read too."""
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source)


def check_columns(path: Path, schema: pa.Schema, *, audio: str, text: str | None, lang: str | None,
                  speaker: str | None) -> Columns:
    """The columns to read from one file; XlsrError naming the file and its columns when one is missing."""
    have = schema.names
    columns = f"(columns: {listing(have, 20)})"
    if audio not in have:
        raise XlsrError(f"{path}: no audio column {audio!r} {columns}; pass --audio-column")
    kind = schema.field(audio).type
    if not pa.types.is_struct(kind) or kind.get_field_index("bytes") < 0:
        raise XlsrError(f"{path}: column {audio!r} is {kind}, not an Audio feature's struct<bytes, path>")
    if text and text not in have:
        raise XlsrError(f"{path}: no text column {text!r} {columns}; pass --text-column NAME, "
                        f"or --text-column '' for audio only")
    if lang is not None and lang not in have:
        raise XlsrError(f"{path}: no language column {lang!r} {columns}; pass --lang-column NAME or --lang CODE")
    lang_names = None
    if lang is not None and pa.types.is_integer(schema.field(lang).type):
        lang_names = class_names(schema, lang)
        if lang_names is None:
            raise XlsrError(f"{path}: language column {lang!r} holds numbers, and the file names no classes for "
                            f"them; pass --lang-column NAME or --lang CODE")
    if speaker is None:
        speaker = next((c for c in SPEAKER_COLUMNS if c in have), None)
    return Columns(audio, text or None, lang, speaker, lang_names)


def class_names(schema: pa.Schema, column: str) -> tuple[str, ...] | None:
    """The names of a `datasets` ClassLabel column, which stores class ids (FLEURS' lang_id: 0 for af_za, ...) and
    keeps the names in the schema's `huggingface` metadata; None for any other column."""
    try:
        features = parse_json((schema.metadata or {})[b"huggingface"])["info"]["features"]
        feature = features[column]
    except (KeyError, TypeError, ValueError):
        return None
    names = feature.get("names") if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" else None
    return tuple(str(name) for name in names) if isinstance(names, list) else None


def table_rows(path: Path, columns: list[str]) -> Iterator[dict | XlsrError]:
    """The rows of one file as dicts of `columns`, read a record batch at a time. A file that breaks off (a
    damaged page) ends with an XlsrError in place of the rows past the break, which cannot be read."""
    try:
        if path.suffix == ".parquet":
            # pyarrow's defaults read ahead across row groups: on a 230 MB file of 29 MB row groups they held
            # 310 MB, these settings 92 MB (the memory stays a few row groups, whatever the file's size)
            batches = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20).iter_batches(
                batch_size=BATCH_ROWS, columns=columns, use_threads=False)
            for batch in batches:
                yield from batch.to_pylist()
            return
        with pa.memory_map(str(path)) as source:  # mapped: the file's pages are read as rows are used
            reader = _arrow_reader(source)
            batches = reader if isinstance(reader, pa.ipc.RecordBatchStreamReader) else (
                reader.get_batch(i) for i in range(reader.num_record_batches))
            for batch in batches:
                yield from batch.select(columns).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        yield XlsrError(f"unreadable from here on ({str(exc).splitlines()[0][:120]})")


def row_audio(value: dict | None, where: str, folder: Path) -> np.ndarray:
    """One Audio cell -> 16 kHz mono float32: its embedded bytes, else the file its path names."""
    if value is None:
        raise AudioError(f"{where}: no audio")
    if value.get("bytes"):
        return decode_audio(value["bytes"], where)
    path = value.get("path")
    if path and (folder / path).is_file():  # a dataset saved without embedding: paths point at local files
        return load_audio(folder / path)
    raise AudioError(f"{where}: no audio bytes and no file at its path {path!r}")


def import_row(row: dict, cols: Columns, writer: ImportWriter, *, where: str, folder: Path, fallback_id: str,
               lang: str | None, split: str) -> None:
    """One row into `writer` as a FLAC file and an utterance; XlsrError (made a skip by the caller) if bad."""
    text = None
    if cols.text is not None:
        text = row[cols.text]
        if text is None:
            raise XlsrError(f"no text in column {cols.text!r}")
        text = str(text).strip()
    code = lang
    if code is None:
        value = row[cols.lang]
        if value is None or value == "":  # a class id 0 is a language
            raise XlsrError(f"no language in column {cols.lang!r}")
        if cols.lang_names is not None:
            if not 0 <= value < len(cols.lang_names):
                raise XlsrError(f"class {value} in column {cols.lang!r}, which names {len(cols.lang_names)} classes")
            value = cols.lang_names[value]
        code = language_code(str(value))
    x = row_audio(row[cols.audio], where, folder)
    name = Path((row[cols.audio] or {}).get("path") or "").stem or fallback_id
    utt_id = writer.unique_id(name, code, split)
    speaker = str(row[cols.speaker]) if cols.speaker and row[cols.speaker] not in (None, "") else "unknown"
    path = writer.write_audio(x, utt_id, code, split)
    writer.add(Utterance(audio=str(path), num_samples=len(x), lang=code, speaker=speaker, text=text, id=utt_id),
               split)


def import_hf(src: str | Path, out_dir: str | Path, *, audio_column: str = "audio", text_column: str | None = "sentence",
              lang_column: str = "locale", lang: str | None = None, split: str = "train",
              split_from_filename: bool = False, max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
              show_progress: bool = True) -> ImportSummary:
    """A Hugging Face dataset's Parquet or Arrow files -> DIR/<lang>/<split>.jsonl + FLAC under DIR/<lang>/audio."""
    src = Path(src)
    tables = find_tables(src)
    plans, unreadable = [], []
    for path in tables:  # every file's columns first: a wrong one is refused before any row is decoded
        try:
            schema, rows = open_table(path)
        except XlsrError as exc:  # a damaged shard of many: skipped below, as bad as max_bad_share allows
            unreadable.append((path, exc))
            continue
        cols = check_columns(path, schema, audio=audio_column, text=text_column,
                             lang=None if lang else lang_column, speaker=None)
        plans.append((path, cols, rows, split_of(path, src) if split_from_filename else split))
    if not plans:
        raise unreadable[0][1]  # nothing readable at all: not a dataset, one line naming its first file
    known = [rows for _, _, rows, _ in plans]
    bar = progress(total=None if None in known else sum(known), desc="import hf", unit="row",
                   disable=not show_progress)
    with bar, ImportWriter(out_dir, source=str(src), unit="rows", max_bad_share=max_bad_share) as writer:
        for path, exc in unreadable:  # how many rows it holds is unknown: one bad item
            writer.skip(str(path), f"{str(exc).removeprefix(f'{path}: ')}; the whole file skipped")
        for path, cols, rows, table_split in plans:
            for number, row in enumerate(table_rows(path, cols.names())):
                where = f"{path}:row {number}"
                if isinstance(row, XlsrError):  # the file breaks off: the rows past the break are bad
                    lost = 1 if rows is None else max(rows - number, 1)
                    rest = "the rest of the file" if rows is None else f"{lost} rows"
                    writer.skip(where, f"{row}; {rest} skipped", count=lost)
                    bar.update(0 if rows is None else lost)
                    break
                try:
                    import_row(row, cols, writer, where=where, folder=path.parent,
                               fallback_id=f"{path.stem}-{number}", lang=lang, split=table_split)
                except ImportRefused:
                    raise
                except AudioError as exc:
                    writer.skip(where, str(exc).removeprefix(f"{where}: "))
                except XlsrError as exc:
                    writer.skip(where, str(exc))
                bar.update(1)
        return writer.finish()
