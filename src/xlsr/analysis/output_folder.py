"""Where `xlsr analyze` and `xlsr probe` may write: into --out, only over their own earlier outputs.

A rerun into the same folder replaces what the last run wrote there, but a file of the same name that is the
user's (notes kept as analysis.json, a figure of their own called pca.png) is refused before any work and left
as it is. An earlier output is told apart by its content: the JSON report by the keys it always holds,
codeword_counts.npz by its arrays, a PNG by the mark `plots.save_png` writes into it, or, for a figure written
before that mark, by its name in the folder's report (written last, it names every file of its run). A report that
names the mark (REPORT_MARK_KEY) was written with marked figures: an unmarked figure of a name it lists is not its
run's (the user's own picture saved over it) and is refused as any other. A rerun that draws no figure (--no-plot)
removes the earlier run's figures, so that the folder shows none that its new report does not match; the user's
files of those names stay.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from xlsr.errors import XlsrError
from xlsr.jsonl import json_object

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MARK_KEY = "xlsr"  # a PNG tEXt key; its value names the command that drew the figure
REPORT_MARK_KEY = "png_mark"  # a report's key naming the mark its run's figures carry (absent: drawn unmarked)
_MAX_REPORT_BYTES = 256 * 2**20  # a report longer than this is no output of ours
_MAX_CHUNK_BYTES = 2**20  # a text chunk before the image data longer than this is no figure of ours


@dataclass(frozen=True)
class Outputs:
    """What one command writes into its folder: the report (a JSON object with `report_keys`) and other files."""

    command: str  # "xlsr analyze": the PNG mark and the error line name it
    report: str  # e.g. "analysis.json"
    report_keys: tuple[str, ...]
    arrays: dict[str, tuple[str, ...]]  # .npz file name -> the arrays it always holds
    figures: tuple[str, ...]  # PNG file names


def check_output_folder(out_dir: Path, outputs: Outputs, *, with_figures: bool) -> None:
    """XlsrError (one line naming --out and the file) unless every file the command will write into `out_dir` is
    new or an earlier output of its own; the figures count only `with_figures`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise XlsrError(f"--out {out_dir}: exists and is not a folder")
    if not out_dir.is_dir():
        return
    names = [outputs.report, *outputs.arrays, *(outputs.figures if with_figures else ())]
    for name in names:
        path = out_dir / name
        if not path.exists():
            continue
        try:
            why = _why_not_ours(path, name, outputs)
        except OSError as exc:
            why = f"it cannot be read: {exc.strerror}"
        if why is not None:
            raise XlsrError(f"--out {out_dir}: {name} exists and is not an output of {outputs.command} ({why}); it is "
                            f"left as it is: move it away or give another --out")


def remove_own_figures(out_dir: Path, outputs: Outputs) -> list[str]:
    """For a run that draws no figure: delete the figures in `out_dir` that an earlier run of the command drew (they
    show other results than the new report), keeping any file of those names that is the user's; the names deleted.

    Called before the new report is written, while the earlier report can still vouch for an unmarked figure of a
    version before the mark. A crash in between leaves the earlier report naming a figure that is gone, which a
    reader sees as missing; the other order could leave the new report beside a figure of the earlier results,
    which nothing tells apart from a current one.
    """
    removed = []
    for name in outputs.figures:
        path = out_dir / name
        try:
            ours = path.exists() and _why_not_ours(path, name, outputs) is None
        except OSError:  # unreadable: not known to be ours, so it stays
            ours = False
        if not ours:
            continue
        try:
            path.unlink()
        except OSError as exc:
            raise XlsrError(f"--out {out_dir}: {name} is a figure of an earlier {outputs.command} run and cannot be "
                            f"removed ({exc.strerror}); this run draws none, and the figure would not match its "
                            f"report: remove it or give another --out") from None
        removed.append(name)
    return removed


def _why_not_ours(path: Path, name: str, outputs: Outputs) -> str | None:
    """Why the existing `path` (the command's output `name`) is no earlier output of the command; None if it is."""
    if not path.is_file():
        return "it is not a regular file"
    report = _read_report(path.parent / outputs.report, outputs.report_keys)
    if name == outputs.report:
        return None if report else f"it is not a JSON object with the keys {', '.join(outputs.report_keys)}"
    if name in outputs.arrays:
        arrays = outputs.arrays[name]
        return None if _holds_arrays(path, arrays) else f"it is not a .npz file of the arrays {', '.join(arrays)}"
    if png_mark(path) == outputs.command:
        return None
    files = report.get("files")
    listed = isinstance(files, dict) and name in [v for v in files.values() if isinstance(v, str)]
    drawn_unmarked = REPORT_MARK_KEY not in report  # a report of a version before the mark: its figures have none
    return None if listed and drawn_unmarked else f"it is no figure that {outputs.command} drew"


def png_mark(path: Path) -> str | None:
    """The value of the PNG's `PNG_MARK_KEY` text chunk (before its image data), or None."""
    with open(path, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return None
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind in (b"IDAT", b"IEND") or length > _MAX_CHUNK_BYTES:
                return None
            data = f.read(length)
            f.seek(4, 1)  # the chunk's CRC
            key, _, value = data.partition(b"\0")
            if kind == b"tEXt" and key == PNG_MARK_KEY.encode():
                return value.decode("latin-1")


def _read_report(path: Path, keys: tuple[str, ...]) -> dict:
    """The earlier report at `path` if it is one (a JSON object holding `keys`), else {}."""
    if not path.is_file():
        return {}
    with open(path, "rb") as f:
        text = f.read(_MAX_REPORT_BYTES + 1)
    record = json_object(text) if len(text) <= _MAX_REPORT_BYTES else {}
    return record if all(k in record for k in keys) else {}


def _holds_arrays(path: Path, arrays: tuple[str, ...]) -> bool:
    """Whether `path` is a .npz archive holding (at least) the named arrays."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return all(f"{name}.npy" in members for name in arrays)
