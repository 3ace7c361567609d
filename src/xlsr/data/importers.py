"""Importers: other corpus layouts -> our manifests (DIR/<lang>/<split>.jsonl). Audio is not copied;
the manifests point at the original files by absolute path. A bad line or a missing or unreadable file is
skipped and listed by `ImportWriter`, which refuses when more than `max_bad_share` of the items were bad."""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from xlsr.data.audio import (
    AUDIO_SUFFIXES,
    UNREADABLE_AUDIO_SUFFIXES,
    audio_num_samples,
    files_under,
    unreadable_format,
)
from xlsr.data.import_writer import DEFAULT_MAX_BAD_SHARE, ImportSummary, ImportWriter
from xlsr.data.manifest import Utterance, check_plain_name, manifest_path
from xlsr.errors import AudioError, ManifestError, XlsrError, listing

# other toolkits' names for a validation split (fairseq's valid.tsv, the Hub's validation/), which training reads as
# `dev` (--valid-split); every other name is kept as it is
VALIDATION_NAMES = {"validation": "dev", "valid": "dev"}
CV_SPLITS = ("train", "dev", "test")  # the tsvs of a Common Voice release imported unless others are named


def split_name(name: str) -> str:
    """Our split for another toolkit's split name: `valid` or `validation` (any case) -> `dev`, others unchanged."""
    return VALIDATION_NAMES.get(name.lower(), name)


def _with_length(utt: Utterance) -> Utterance:
    """`utt` with num_samples from its file's header; AudioError when the file is missing or unreadable."""
    utt.num_samples = audio_num_samples(utt.audio)
    return utt


def _found_audio(path: Path) -> str:
    """A file found in a folder as its manifest line names it, links followed; AudioError naming the link for one that
    leads to no file (its target gone, or a loop of links)."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            raise AudioError(f"{path}: a link that leads to no file ({exc.strerror.lower()})") from None
    return os.path.realpath(path)


def _cv_clip(clips: Path, name: str) -> Path:
    """The clip a tsv row names; a name without a suffix (older releases) is the .mp3 of that name."""
    clip = clips / name
    if not clip.is_file() and not clip.suffix and clip.with_suffix(".mp3").is_file():
        return clip.with_suffix(".mp3")
    return clip


def _cv_utterance(row: dict, clips: Path, lang: str | None) -> Utterance:
    """One Common Voice tsv row as an utterance (its length not read yet); XlsrError saying what the row lacks."""
    short = [c for c in ("client_id", "path", "sentence") if row.get(c) is None]
    if short:
        raise ManifestError(f"too few columns (no {', '.join(short)})")
    if not row["path"]:
        raise ManifestError("empty path")
    code = lang or row.get("locale")
    if not code:
        raise ManifestError("no locale; pass --lang")
    check_plain_name("language code", code)  # it names a folder under OUT
    clip = _cv_clip(clips, row["path"])
    return Utterance(audio=str(clip.resolve()), num_samples=1, lang=code, speaker=row["client_id"],
                     text=row["sentence"], id=clip.stem)


def import_common_voice(src: str | Path, out_dir: str | Path, *, lang: str | None = None,
                        splits: tuple[str, ...] | None = None,
                        max_bad_share: float = DEFAULT_MAX_BAD_SHARE) -> ImportSummary:
    """A Common Voice release folder (clips/*.mp3 + train/dev/test.tsv) -> DIR/<locale>/<split>.jsonl; a row that
    is short, names no clip or a clip that cannot be read is skipped (`ImportWriter`). `splits` names the tsvs to
    read, each of which must be there (`validated`, `other`: the release's other tsvs); by default train, dev and
    test, those present."""
    src = Path(src)
    if not (src / "clips").is_dir():
        raise XlsrError(f"{src}: not a Common Voice folder (no clips/ subfolder)")
    if splits:
        splits = tuple(dict.fromkeys(splits))  # a tsv named twice is read once: its rows are not doubled
        for split in splits:
            check_plain_name("split", split)  # it names a tsv in SRC and a manifest under OUT
        if absent := [split + ".tsv" for split in splits if not (src / f"{split}.tsv").is_file()]:
            found = sorted(p.name for p in src.glob("*.tsv"))
            raise XlsrError(f"{src}: no {', '.join(absent)} (found: {', '.join(found) or 'no .tsv files'})")
    splits = splits or CV_SPLITS
    tsvs = [(split, src / f"{split}.tsv") for split in splits if (src / f"{split}.tsv").is_file()]
    if not tsvs:
        raise XlsrError(f"{src}: no {'/'.join(s + '.tsv' for s in splits)} found")
    with ImportWriter(out_dir, source=str(src), unit="utterances", max_bad_share=max_bad_share) as writer:
        for split, tsv in tsvs:
            rows = _tsv_rows(tsv)
            number, header = next(rows, (1, []))
            missing = {"client_id", "path", "sentence"} - set(header)
            if missing:
                raise ManifestError(f"{tsv}:{number}: missing column(s) {', '.join(sorted(missing))}")
            if lang is None and "locale" not in header:
                raise ManifestError(f"{tsv}:{number}: no locale column; pass --lang")
            for number, fields in rows:
                try:
                    if len(fields) > len(header):  # the sentence would be cut at the tab, later columns shifted
                        raise ManifestError(f"{len(fields)} columns, the header has {len(header)} (a tab inside the "
                                            f"sentence?)")
                    utt = _with_length(_cv_utterance(dict(zip(header, fields)), src / "clips", lang))
                except XlsrError as exc:
                    writer.skip(f"{tsv}:{number}", str(exc))
                    continue
                writer.add(utt, split)
        return writer.finish()


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the non-empty lines of a tab-separated file, read a line at a time (a release's
    tsv of a million rows is never held whole). Lines end at '\\n' only (a '\\r' before it dropped) and fields at
    every tab; quotes are plain characters, as Common Voice writes them (unquoted), so a sentence may hold a '"'. A
    BOM before the first line is dropped; ManifestError naming the first line that is not UTF-8."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise ManifestError(f"{path}:{number}: not UTF-8 text") from None
            line = line.removesuffix("\n").removesuffix("\r")
            if line:
                yield number, line.split("\t")


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a BOM dropped), split as fairseq splits them: at '\\n' only, a '\\r' before
    it dropped, so a U+2028, U+0085 or form feed inside a transcript stays in its line. ManifestError when the
    file is not text."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line.removesuffix("\r") for line in lines]


def _letters_to_text(line: str) -> str:
    """fairseq .ltr ('h e l l o | w o r l d |') -> 'hello world'."""
    return " ".join("".join(word.split()) for word in line.split("|") if word.strip())


def _fairseq_root(tsv: Path, lines: list[str]) -> Path:
    """The audio root folder on a fairseq manifest's first line. A relative one is looked for beside the manifest and
    in the working folder (where fairseq reads it from): the first that holds the first listed file, else the first
    that is a folder."""
    if not lines or not lines[0].strip():
        raise ManifestError(f"{tsv}:1: expected the audio root folder on the first line")
    given = Path(lines[0].strip())
    roots = [given] if given.is_absolute() else [tsv.parent / given, Path.cwd() / given]
    first = next((line.split("\t")[0] for line in lines[1:] if line.strip()), "")
    found = next((root for root in roots if first and (root / first).is_file()), None)
    found = found or next((root for root in roots if root.is_dir()), None)
    if found is None:
        where = "" if given.is_absolute() else f" (looked for beside the manifest and in the working folder {Path.cwd()})"
        raise ManifestError(f"{tsv}:1: audio root folder {lines[0].strip()!r} does not exist{where}; a fairseq "
                            f"manifest starts with it, then 'relative/path<TAB>num_samples' lines")
    return found


def _fairseq_utterance(line: str, root: Path, lang: str) -> Utterance:
    """One `relative/path<TAB>num_samples` line, its length read from the file's header; XlsrError when the line
    is malformed or its file missing or unreadable."""
    fields = line.split("\t")
    count = fields[1].strip() if len(fields) > 1 else ""
    if not (count.isascii() and count.isdigit()) or int(count) <= 0:  # '²'.isdigit() is True
        raise ManifestError("expected 'relative/path<TAB>num_samples'")
    # the id is the listed path without its suffix: two folders' 001.flac stay two utterances
    utt_id = Path(fields[0].strip()).with_suffix("").as_posix()
    # not the listed count: fairseq's wav2vec_manifest.py counts frames at the file's own rate, ours are at 16 kHz
    return _with_length(Utterance(audio=str((root / fields[0]).resolve()), num_samples=1, lang=lang, id=utt_id))


def _fairseq_labels(tsv: Path, entries: int) -> list[tuple[str, list[str]]]:
    """(attribute, one label per manifest entry) of the .wrd/.ltr/.phn files beside `tsv`; words are
    preferred to letters when both exist. ManifestError when a file's line count is not the manifest's."""
    labels = []
    for suffix, attr, convert in ((".wrd", "text", str.strip), (".ltr", "text", _letters_to_text),
                                  (".phn", "phones", str.strip)):
        path = tsv.with_suffix(suffix)
        if not path.is_file() or (suffix == ".ltr" and tsv.with_suffix(".wrd").is_file()):
            continue
        lines = _read_lines(path)
        if len(lines) != entries:
            raise ManifestError(f"{path}: {len(lines)} lines but {tsv} lists {entries} files")
        labels.append((attr, [convert(line) for line in lines]))
    return labels


def import_fairseq(tsv: str | Path | list[str | Path], out_dir: str | Path, *, lang: str, split: str | None = None,
                   max_bad_share: float = DEFAULT_MAX_BAD_SHARE) -> ImportSummary:
    """fairseq manifest(s) (first line root dir, then `relpath<TAB>num_samples`) with optional .wrd/.ltr/.phn
    label files beside each -> DIR/<lang>/<split>.jsonl: `split` for every tsv, else each tsv's stem (`valid` and
    `validation` read as `dev`: `split_name`). Lengths are read from the files' headers at 16 kHz (the listed counts
    are at each file's own rate). A malformed line or a file that is missing or unreadable is skipped with its label
    lines (`ImportWriter`)."""
    tsvs = [Path(tsv)] if isinstance(tsv, (str, Path)) else [Path(t) for t in tsv]
    source = " + ".join(str(t) for t in tsvs)
    with ImportWriter(out_dir, source=source, unit="utterances", max_bad_share=max_bad_share) as writer:
        for tsv in tsvs:
            if not tsv.is_file():
                raise ManifestError(f"{tsv}: no such fairseq manifest")
            tsv_split = split or split_name(tsv.stem)
            manifest_path(out_dir, lang, tsv_split)  # both names checked before anything is written
            lines = _read_lines(tsv)
            root = _fairseq_root(tsv, lines)
            entries = [(number, line) for number, line in enumerate(lines[1:], 2) if line.strip()]
            if not entries:
                raise ManifestError(f"{tsv}: no 'relative/path<TAB>num_samples' lines after the root folder")
            labels = _fairseq_labels(tsv, len(entries))
            for i, (number, line) in enumerate(entries):
                try:
                    utt = _fairseq_utterance(line, root, lang)
                except XlsrError as exc:
                    writer.skip(f"{tsv}:{number}", str(exc))  # its label lines are left out with it
                    continue
                for attr, values in labels:
                    setattr(utt, attr, values[i])
                writer.add(utt, tsv_split)
        return writer.finish()


def _nfc(key: str) -> str:
    """A file key in Unicode NFC: macOS and many zips store names decomposed (NFD), transcripts are typed composed."""
    return unicodedata.normalize("NFC", key)


def audio_files(src: Path) -> tuple[dict[str, set[Path]], dict[str, set[Path]]]:
    """The audio files under `src` by the keys a transcript line may use: ({path relative to `src`, with and
    without its extension: files}, {bare name and stem: files}), keys in NFC (`_nfc`), files as they are named.
    A bare name can belong to several files."""
    by_path: dict[str, set[Path]] = {}
    by_name: dict[str, set[Path]] = {}
    for path in files_under(src):
        if path.suffix.lower() in AUDIO_SUFFIXES:
            rel = path.relative_to(src)
            for key in (rel.as_posix(), rel.with_suffix("").as_posix()):
                by_path.setdefault(_nfc(key), set()).add(path)
            for key in (path.name, path.stem):
                by_name.setdefault(_nfc(key), set()).add(path)
    return by_path, by_name


def _folder_audio(key: str, src: Path, by_path: dict[str, set[Path]], by_name: dict[str, set[Path]]) -> Path:
    """The one file a transcript key names (compared in NFC): by relative path, else by bare name or stem;
    XlsrError for none or several."""
    found = by_path.get(_nfc(key)) or by_name.get(_nfc(key))
    if not found:
        raise AudioError(f"no audio file {key!r} in {src}")
    if len(found) > 1:
        names = listing(sorted(p.relative_to(src).as_posix() for p in found), 4)
        raise ManifestError(f"{key!r} is ambiguous: {names}; use the path relative to {src}")
    return next(iter(found))


def import_folder(src: str | Path, transcripts: str | Path, out_dir: str | Path, *, lang: str,
                  split: str = "train", label: str = "text",
                  max_bad_share: float = DEFAULT_MAX_BAD_SHARE) -> ImportSummary:
    """A folder of audio files plus a transcript file of `<key><TAB or space><label>` lines, the key being a
    file's path relative to the folder or its bare name, with or without extension. A line whose file is missing,
    ambiguous or unreadable is skipped (`ImportWriter`)."""
    src, transcripts = Path(src), Path(transcripts)
    if not src.is_dir():
        raise XlsrError(f"{src}: no such audio folder")
    if label not in ("text", "phones"):
        raise XlsrError(f"--label must be text or phones, got {label!r}")
    if not transcripts.is_file():
        raise ManifestError(f"{transcripts}: no such transcript file")
    manifest_path(out_dir, lang, split)  # both names checked before anything is written
    lines = [(number, line) for number, line in enumerate(_read_lines(transcripts), 1) if line.strip()]
    if not lines:
        raise ManifestError(f"{transcripts}: no transcript lines")
    by_path, by_name = audio_files(src)
    first_line: dict[Path, int] = {}  # audio file -> the transcript line that took it
    with ImportWriter(out_dir, source=str(transcripts), unit="utterances", max_bad_share=max_bad_share) as writer:
        for number, line in lines:
            key, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
            if not rest.strip():  # a name alone: its label lost (a line cut, a tab where none belongs)
                writer.skip(f"{transcripts}:{number}", f"no label after {key.strip()!r} (a line is <file> <label>)")
                continue
            try:
                found = _folder_audio(key, src, by_path, by_name)
                if found in first_line:  # one recording, two transcripts: which one is right is not ours to guess
                    raise XlsrError(f"{found.relative_to(src).as_posix()} already has a transcript "
                                    f"(line {first_line[found]})")
                first_line[found] = number
                # the id is the path under SRC without its suffix: spk1/001 and spk2/001 stay two utterances
                utt_id = _nfc(found.relative_to(src).with_suffix("").as_posix())
                utt = _with_length(Utterance(audio=_found_audio(found), num_samples=1, lang=lang, id=utt_id))
            except XlsrError as exc:
                writer.skip(f"{transcripts}:{number}", str(exc))
                continue
            setattr(utt, label, rest.strip())
            writer.add(utt, split)
        return writer.finish()


def import_audio_folder(src: str | Path, out_dir: str | Path, *, lang: str, split: str = "train",
                        max_bad_share: float = DEFAULT_MAX_BAD_SHARE) -> ImportSummary:
    """Every audio file under `src` (AUDIO_SUFFIXES, in any case, in subfolders too) as one unlabeled utterance, the
    data pretraining needs: DIR/<lang>/<split>.jsonl, the audio referenced where it lies. A file that is not
    readable audio is skipped (`ImportWriter`)."""
    src = Path(src)
    if not src.is_dir():
        raise XlsrError(f"{src}: no such audio folder")
    manifest_path(out_dir, lang, split)  # both names checked before anything is written
    files = [path for path in files_under(src) if path.suffix.lower() in AUDIO_SUFFIXES + UNREADABLE_AUDIO_SUFFIXES]
    if not any(path.suffix.lower() in AUDIO_SUFFIXES for path in files):
        # recordings only in formats xlsr does not read are named as such, not called no audio at all
        others = f"; {len(files)} in formats xlsr does not read (first: {unreadable_format(files[0])})" if files else ""
        raise XlsrError(f"{src}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it or its subfolders{others}")
    # the id is the path under SRC without its suffix (spk1/001 and spk2/001 stay two utterances); with it where two
    # files differ by their suffix alone (001.wav, 001.flac)
    stems = Counter(_nfc(path.relative_to(src).with_suffix("").as_posix()) for path in files)
    with ImportWriter(out_dir, source=str(src), unit="files", max_bad_share=max_bad_share) as writer:
        for path in files:
            if path.suffix.lower() in UNREADABLE_AUDIO_SUFFIXES:  # named, not passed over
                writer.skip(str(src), unreadable_format(path))
                continue
            utt_id = _nfc(path.relative_to(src).with_suffix("").as_posix())
            if stems[utt_id] > 1:
                utt_id = _nfc(path.relative_to(src).as_posix())
            try:
                utt = _with_length(Utterance(audio=_found_audio(path), num_samples=1, lang=lang, id=utt_id))
            except XlsrError as exc:
                writer.skip(str(src), str(exc))
                continue
            writer.add(utt, split)
        return writer.finish()
