"""Where `xlsr transcribe` and `xlsr evaluate` may write, checked before any decoding.

An output is refused (one line naming the option and the file) when it is a folder or not a regular file (a
device, a pipe), another output of the same command, one of the command's inputs (the audio files or manifests
given, the --lm and --lexicon files and the LM's side files), inside the model (the checkpoint --model loads, and a
run folder's checkpoints/: a new file there would also change the checkpoint's fingerprint, by which a resumed
transcription is checked), or an existing file that is not an earlier output of the same kind. An earlier output
is told apart by the keys its JSON always holds (the first line's, for JSONL) so that a rerun replaces its own
output but never audio, a manifest, a config or a report of another command. An empty file is taken as an earlier
output (a transcription whose every file failed writes one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xlsr.errors import XlsrError
from xlsr.jsonl import json_object, parse_json

_MAX_JSON_BYTES = 256 * 2**20  # a report (or a first line) longer than this is no output of ours


@dataclass(frozen=True)
class OutputKind:
    """What a decoding command writes, told apart by the keys its JSON objects always hold."""
    name: str
    keys: tuple[str, ...]
    lines: bool  # JSONL (its first line is checked) or one JSON object (the whole file)


TRANSCRIPTS = OutputKind("a results file of xlsr transcribe", ("audio", "text", "tokens"), lines=True)
HYPOTHESES = OutputKind("a hypotheses file of xlsr evaluate --hyps", ("id", "ref", "hyp"), lines=True)
REPORT = OutputKind("a report of xlsr evaluate --json", ("languages", "total"), lines=False)


def decoder_files(lm: str | Path | None, lexicon: str | Path | None) -> list[Path]:
    """The files a decoder reads: the LM, its side files (`xlsr lm build`'s OUT.json and OUT.words.txt), the
    lexicon."""
    from xlsr.decode.lm import sidecar_path, words_path  # lazy: lm.py imports same_file from here

    files = [Path(lm), sidecar_path(lm), words_path(lm)] if lm is not None else []
    return files + ([Path(lexicon)] if lexicon is not None else [])


def check_outputs(outputs: Iterable[tuple[str, str | Path | None, OutputKind]], *,
                  inputs: Iterable[str | Path], model: str | Path) -> None:
    """XlsrError unless every (option, path, kind) of `outputs` (a None path: not asked for) may be written (see
    the module docstring); `inputs` are the files and folders the command reads, `model` is --model as given."""
    inputs = [Path(p) for p in inputs]
    model_parts = _model_parts(model)
    seen: list[tuple[str, Path]] = []
    for option, path, kind in outputs:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise XlsrError(f"{option} {path}: is a folder; give a file name for the output")
        if path.exists() and not path.is_file():
            raise XlsrError(f"{option} {path}: is not a regular file (a device, a pipe or a socket); give a file "
                            f"name for the output")
        for other_option, other in seen:
            if same_file(path, other):
                raise XlsrError(f"{option} {path}: is also the file of {other_option}; give each output a file "
                                f"of its own")
        seen.append((option, path))
        for given in inputs:
            if same_file(path, given):
                raise XlsrError(f"{option} {path}: is the input {given}, which writing it would overwrite; give "
                                f"the output another file name")
        real = Path(os.path.realpath(path))
        for part in model_parts:
            if real == part or part in real.parents:
                raise XlsrError(f"{option} {path}: is inside the model ({part}), which writing it would change; "
                                f"give the output a file name outside it")
        if path.is_file() and not _written_as(path, kind):
            keys = ", ".join(kind.keys)
            holds = f"its first line is not a JSON object with the keys {keys}" if kind.lines else \
                f"it is not a JSON object with the keys {keys}"
            raise XlsrError(f"{option} {path}: exists and is not {kind.name} ({holds}); it is left as it is: move "
                            f"it away or give the output another file name")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether `a` and `b` name one file: the same path once links are followed, or (hard links) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing
        return False


def _model_parts(model: str | Path) -> list[Path]:
    """What an output must neither be nor lie inside: the checkpoint `model` loads (its folder, or its file) and,
    for a run folder, its checkpoints/ (every checkpoint training wrote), links followed."""
    from xlsr.interop.load import checkpoint_path  # lazy: it imports torch

    given = Path(model)
    if not given.exists():
        return []  # loading it says why
    parts = [given / "checkpoints" if given.is_dir() and (given / "checkpoints").is_dir()
             and not (given / "config.json").is_file() else given]
    try:
        parts.append(checkpoint_path(given))
    except XlsrError:
        pass  # a run folder without a complete checkpoint: loading it says so
    return [Path(os.path.realpath(p)) for p in parts]


def _written_as(path: Path, kind: OutputKind) -> bool:
    """Whether the existing file `path` is empty or holds what `kind` writes (its keys)."""
    with open(path, "rb") as f:
        head = f.read(1)
        if not head:
            return True
        if head.lstrip() and head != b"{":  # not even JSON: audio, a YAML config, text (no read of a big file)
            return False
        f.seek(0)
        text = f.readline(_MAX_JSON_BYTES) if kind.lines else f.read(_MAX_JSON_BYTES + 1)
    if kind.lines:
        record = json_object(text)
    else:
        try:
            record = parse_json(text) if len(text) <= _MAX_JSON_BYTES else None
        except ValueError:  # UnicodeDecodeError too
            record = None
    return isinstance(record, dict) and all(k in record for k in kind.keys)
