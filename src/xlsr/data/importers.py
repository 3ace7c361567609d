"""Importers: other corpus layouts -> our manifests (DIR/<lang>/<split>.jsonl). Audio is not copied;
the manifests point at the original files by absolute path."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from xlsr.data.audio import audio_num_samples
from xlsr.data.manifest import Utterance, manifest_path, write_manifest
from xlsr.errors import AudioError, ManifestError, XlsrError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def _with_lengths(utts: list[Utterance], source: str) -> list[Utterance]:
    """Fill num_samples from each file's header; unreadable files are logged and dropped."""
    kept = []
    for u in utts:
        try:
            u.num_samples = audio_num_samples(u.audio)
        except AudioError as exc:
            log.warning("skipping: %s", exc)
            continue
        kept.append(u)
    if utts and not kept:
        raise XlsrError(f"{source}: none of the {len(utts)} audio files could be read")
    if len(kept) < len(utts):
        log.warning("%s: skipped %d unreadable audio files of %d", source, len(utts) - len(kept), len(utts))
    return kept


def import_common_voice(src: str | Path, out_dir: str | Path, *, lang: str | None = None,
                        splits: tuple[str, ...] = ("train", "dev", "test")) -> dict[str, int]:
    """A Common Voice release folder (clips/*.mp3 + train/dev/test.tsv) -> {split: utterances}."""
    src = Path(src)
    if not (src / "clips").is_dir():
        raise XlsrError(f"{src}: not a Common Voice folder (no clips/ subfolder)")
    written = {}
    for split in splits:
        tsv = src / f"{split}.tsv"
        if not tsv.is_file():
            continue
        utts = []
        _read_lines(tsv)  # a file that is not text: one line naming it, not a decode error mid-file
        with open(tsv, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"client_id", "path", "sentence"} - set(reader.fieldnames or [])
            if missing:
                raise ManifestError(f"{tsv}:1: missing column(s) {', '.join(sorted(missing))}")
            for number, row in enumerate(reader, 2):
                code = lang or row.get("locale")
                if not code:
                    raise ManifestError(f"{tsv}:{number}: no locale column; pass the language code")
                clip = src / "clips" / row["path"]
                utts.append(Utterance(audio=str(clip.resolve()), num_samples=1, lang=code,
                                      speaker=row["client_id"], text=row["sentence"], id=clip.stem))
        utts = _with_lengths(utts, str(tsv))
        for code in sorted({u.lang for u in utts}):
            write_manifest(manifest_path(out_dir, code, split), [u for u in utts if u.lang == code])
        written[split] = len(utts)
    if not written:
        raise XlsrError(f"{src}: no {'/'.join(s + '.tsv' for s in splits)} found")
    return written


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; ManifestError naming it when it is not text."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None


def _letters_to_text(line: str) -> str:
    """fairseq .ltr ('h e l l o | w o r l d |') -> 'hello world'."""
    return " ".join("".join(word.split()) for word in line.split("|") if word.strip())


def import_fairseq(tsv: str | Path, out_dir: str | Path, *, lang: str, split: str | None = None) -> int:
    """A fairseq manifest (first line root dir, then `relpath<TAB>num_samples`) with optional .wrd/.ltr/.phn
    label files next to it -> DIR/<lang>/<split>.jsonl (split defaults to the tsv's stem)."""
    tsv = Path(tsv)
    if not tsv.is_file():
        raise ManifestError(f"{tsv}: no such fairseq manifest")
    lines = _read_lines(tsv)
    if not lines or not lines[0].strip():
        raise ManifestError(f"{tsv}:1: expected the audio root folder on the first line")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = tsv.parent / root
    if not root.is_dir():
        raise ManifestError(f"{tsv}:1: audio root folder {lines[0].strip()!r} does not exist "
                            f"(a fairseq manifest starts with it, then 'relative/path<TAB>num_samples' lines)")
    utts = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1].strip().isdigit() or int(fields[1]) <= 0:
            raise ManifestError(f"{tsv}:{number}: expected 'relative/path<TAB>num_samples'")
        audio = (root / fields[0]).resolve()
        utts.append(Utterance(audio=str(audio), num_samples=int(fields[1]), lang=lang, id=audio.stem))
    if not utts:
        raise ManifestError(f"{tsv}: no 'relative/path<TAB>num_samples' lines after the root folder")
    for suffix, attr, convert in ((".wrd", "text", str.strip), (".ltr", "text", _letters_to_text),
                                  (".phn", "phones", str.strip)):
        path = tsv.with_suffix(suffix)
        if not path.is_file() or (attr == "text" and suffix == ".ltr" and tsv.with_suffix(".wrd").is_file()):
            continue  # words are preferred to letters when both exist
        labels = _read_lines(path)
        if len(labels) != len(utts):
            raise ManifestError(f"{path}: {len(labels)} lines but {tsv} lists {len(utts)} files")
        for u, label in zip(utts, labels):
            setattr(u, attr, convert(label))
    write_manifest(manifest_path(out_dir, lang, split or tsv.stem), utts)
    return len(utts)


def import_folder(src: str | Path, transcripts: str | Path, out_dir: str | Path, *, lang: str,
                  split: str = "train", label: str = "text") -> int:
    """A folder of audio files plus a transcript file of `<file name or stem><TAB or space><label>` lines."""
    src, transcripts = Path(src), Path(transcripts)
    if not src.is_dir():
        raise XlsrError(f"{src}: no such audio folder")
    if label not in ("text", "phones"):
        raise XlsrError(f"--label must be text or phones, got {label!r}")
    files = {}
    for path in sorted(src.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES:
            files.setdefault(path.name, path)
            files.setdefault(path.stem, path)
    if not transcripts.is_file():
        raise ManifestError(f"{transcripts}: no such transcript file")
    utts = []
    for number, line in enumerate(_read_lines(transcripts), 1):
        if not line.strip():
            continue
        key, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
        if key not in files:
            raise ManifestError(f"{transcripts}:{number}: no audio file {key!r} in {src}")
        path = files[key].resolve()
        u = Utterance(audio=str(path), num_samples=1, lang=lang, id=path.stem)
        setattr(u, label, rest.strip())
        utts.append(u)
    if not utts:
        raise ManifestError(f"{transcripts}: no transcript lines")
    utts = _with_lengths(utts, str(transcripts))
    write_manifest(manifest_path(out_dir, lang, split), utts)
    return len(utts)
