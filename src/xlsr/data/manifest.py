"""Manifests: JSONL, one utterance a line, audio paths relative to the manifest's folder.

Layout of a corpus folder: `DIR/<lang>/<split>.jsonl` (+ the audio wherever the lines point).
A line: {"id", "audio", "num_samples", "lang", "speaker", "text"?, "phones"?}; num_samples at 16 kHz.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from xlsr.atomic import json_line, write_file
from xlsr.errors import ManifestError
from xlsr.jsonl import parse_json

REQUIRED = ("audio", "num_samples", "lang")
MAX_SAMPLES = 2**63  # num_samples is held in int64 columns (utterance_index) and tensors


@dataclass
class Utterance:
    """One manifest line, with `audio` resolved to an absolute path."""

    audio: str
    num_samples: int
    lang: str
    speaker: str = "unknown"
    text: str | None = None
    phones: str | None = None
    id: str = ""


def record_problem(record) -> str | None:
    """What is wrong with a parsed manifest line (None: nothing); the checks every reader shares."""
    if not isinstance(record, dict):
        return "expected a JSON object"
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    num_samples = record["num_samples"]
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples <= 0:
        return f"num_samples must be a positive integer, got {num_samples!r}"
    if num_samples >= MAX_SAMPLES:  # the index stores it as int64: a bigger one would be an OverflowError there
        return f"num_samples must be below 2**63, got {num_samples!r}"
    for key in ("audio", "lang"):
        if not isinstance(record[key], str) or not record[key]:
            return f"{key} must be a non-empty string"
    for key in ("speaker", "text", "phones", "id"):
        if key in record and record[key] is not None and not isinstance(record[key], str):
            return f"{key} must be a string"
    return None


def parse_record(raw: bytes) -> tuple[dict | None, str | None]:
    """(record, None) for a valid manifest line given as bytes, else (None, what is wrong)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text (is this a JSONL manifest?)"
    try:
        record = parse_json(line.rstrip("\r\n"))  # a line cut inside a string: "unterminated", not its newline
    except json.JSONDecodeError as exc:  # json's "Unterminated string starting at" needs the place it names
        return None, f"not valid JSON ({exc.msg} column {exc.colno})" if exc.msg.endswith(" at") else \
            f"not valid JSON ({exc.msg})"
    problem = record_problem(record)
    return (None, problem) if problem else (record, None)


def utterance_from_record(record: dict, root: Path) -> Utterance:
    """A valid manifest line as an Utterance; a relative audio path is taken from the manifest's folder `root`."""
    audio = Path(record["audio"])
    if not audio.is_absolute():
        audio = root / audio
    return Utterance(
        audio=str(audio),
        num_samples=record["num_samples"],
        lang=record["lang"],
        speaker=record.get("speaker") or "unknown",
        text=record.get("text"),
        phones=record.get("phones"),
        id=record.get("id") or audio.stem,
    )


def check_manifest_file(path: Path) -> None:
    """ManifestError unless `path` is a regular file: a folder (a corpus or language folder where one manifest
    belongs) is named as one, with manifests in it to give instead; every reader of one manifest checks here."""
    if path.is_dir():
        inside = [p for p in [*sorted(path.glob("*.jsonl")), *sorted(path.glob("*/*.jsonl"))] if p.is_file()][:2]
        raise ManifestError(f"{path}: a folder, not a manifest: give its JSONL files"
                            f"{' (e.g. ' + ' '.join(map(str, inside)) + ')' if inside else ''}")
    if not path.is_file():  # one that exists is no file: a pipe (`--manifest <(...)`) or a device
        raise ManifestError(f"{path}: no such manifest" if not path.exists() else
                            f"{path}: not a regular file (a pipe or a device); give the manifest file itself")


def read_records(path: str | Path) -> list[dict]:
    """Every line of a JSONL manifest as its JSON object, all fields kept; ManifestError naming file and line."""
    path = Path(path)
    check_manifest_file(path)
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                record, problem = parse_record(raw)
                if problem:
                    raise ManifestError(f"{path}:{number}: {problem}")
                records.append(record)
    return records


def read_manifest(path: str | Path) -> list[Utterance]:
    """All utterances of a JSONL manifest; ManifestError naming file and line for a bad line."""
    records = read_records(path)  # first: it names a path that is no manifest (a link loop: resolve would raise)
    root = Path(path).resolve().parent
    return [utterance_from_record(record, root) for record in records]


def check_plain_name(what: str, name: str) -> None:
    """A language code or split names a folder or file under OUT: one that is no plain name (empty, with a path
    separator, `.` or `..`) is one ManifestError, so that nothing is written outside OUT."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ManifestError(f"{what} {name!r}: must be a plain name (no path separator, not empty, . or ..)")


def manifest_path(out_dir: str | Path, lang: str, split: str) -> Path:
    """OUT/<lang>/<split>.jsonl, where a corpus's manifests live (both names checked by `check_plain_name`)."""
    check_plain_name("language code", lang)
    check_plain_name("split", split)
    return Path(out_dir) / lang / f"{split}.jsonl"


def audio_field(audio: str | Path, root: Path) -> str:
    """The `audio` field for a manifest in folder `root`: relative when the file is under it, else absolute."""
    audio = Path(audio).resolve()
    rel = os.path.relpath(audio, root)
    return audio.as_posix() if rel.startswith("..") else Path(rel).as_posix()


def write_manifest(path: str | Path, utts: list[Utterance]) -> None:
    """Write `utts` as JSONL; audio under the manifest's folder is written relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.resolve().parent

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for u in utts:
                record = {"id": u.id, "audio": audio_field(u.audio, root),
                          "num_samples": int(u.num_samples), "lang": u.lang, "speaker": u.speaker}
                if u.text is not None:
                    record["text"] = u.text
                if u.phones is not None:
                    record["phones"] = u.phones
                f.write(json_line(record))

    # readers never see a half-written manifest; the temporary name is unique, so two writers never share it
    write_file(path, write)


def find_manifests(data_dir: str | Path, split: str) -> dict[str, Path]:
    """{lang: DIR/<lang>/<split>.jsonl} for every language folder that has that split, sorted by lang."""
    data_dir = Path(data_dir)
    if data_dir.is_file():  # a manifest given for its corpus folder (fairseq's tasks take the .tsv's folder)
        raise ManifestError(f"{data_dir}: a file, not a data folder: give the folder that holds <lang>/{split}.jsonl")
    if not data_dir.is_dir():
        raise ManifestError(f"{data_dir}: no such data folder")
    found = {p.parent.name: p for p in sorted(data_dir.glob(f"*/{split}.jsonl"))}
    if not found:
        # one language's folder given for the corpus: its manifest is DIR/<split>.jsonl, not DIR/<lang>/<split>.jsonl
        inside = (f" ({split}.jsonl is in it: it is one language's folder; give the folder that holds it)"
                  if (data_dir / f"{split}.jsonl").is_file() else "")
        raise ManifestError(f"{data_dir}: no manifests <lang>/{split}.jsonl found{inside}")
    return found


def split_manifests(data_dir: str | Path, split: str, langs: list[str] | None = None) -> dict[str, Path]:
    """{lang: DIR/<lang>/<split>.jsonl} for `langs` (default: every language found); one line for a missing one."""
    found = find_manifests(data_dir, split)
    if langs is None:
        return found
    unknown = [lang for lang in langs if lang not in found]
    if unknown:
        raise ManifestError(f"{data_dir}: no {split}.jsonl for language(s) {', '.join(unknown)} "
                            f"(found: {', '.join(found)})")
    return {lang: found[lang] for lang in langs}


def read_split(data_dir: str | Path, split: str, langs: list[str] | None = None) -> list[Utterance]:
    """Utterances of `split` for `langs` (default: every language found) from DIR/<lang>/<split>.jsonl."""
    return [u for path in split_manifests(data_dir, split, langs).values() for u in read_manifest(path)]
