"""`xlsr data normalize-text`: a copy of a corpus's manifests with every `text` label normalised.

The copy leaves the original untouched (nothing is lost): DIR/<lang>/<split>.jsonl becomes OUT/<lang>/<split>.jsonl
with the same lines in the same order, each with every field it had (`phones`, speaker, and fields xlsr does not
read, such as Common Voice's gender or accent, as they were), its audio path rewritten to stay valid from OUT, and
`text` by xlsr.text.normalize.normalize_text in the line's `lang` (Turkish I is ı, see there). Fine-tune on OUT, and score with `xlsr evaluate --normalize-text`
(or on OUT's test manifests), so that training and scoring see the same transcripts. OUT/normalize-text.json
records which DIR the copy is of: a rerun may write over its own copy, never over another corpus's manifests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xlsr.atomic import write_json, write_jsonl
from xlsr.data.manifest import audio_field, read_records, utterance_from_record
from xlsr.errors import ManifestError
from xlsr.jsonl import parse_json
from xlsr.text.normalize import normalize_text


@dataclass
class NormalizeSummary:
    """What normalising a corpus changed."""

    manifests: int = 0
    utterances: int = 0
    changed: int = 0  # texts that normalisation altered
    emptied: list[str] = field(default_factory=list)  # ids whose text was all punctuation (now empty)
    symbols_before: set[str] = field(default_factory=set)
    symbols_after: set[str] = field(default_factory=set)

    def line(self, out_dir: str | Path) -> str:
        emptied = (f"; {len(self.emptied)} became empty (e.g. {', '.join(self.emptied[:3])}: fine-tuning skips them)"
                   if self.emptied else "")
        return (f"normalized {self.changed} of {self.utterances} texts in {self.manifests} manifest(s) into "
                f"{out_dir}; distinct characters {len(self.symbols_before)} -> {len(self.symbols_after)}{emptied}")


# Written into OUT: it tells manifests this command wrote (which a rerun may replace) from another corpus's
MARK = "normalize-text.json"


def _check_out(out_dir: Path, data_dir: Path) -> None:
    """ManifestError unless OUT is missing, holds no manifests, or holds this command's earlier copy of DIR:
    OUT/<lang>/<split>.jsonl of another corpus would be overwritten, and its other manifests mixed into the copy."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ManifestError(f"--out {out_dir}: exists and is not a folder")
    if not out_dir.is_dir():
        return
    try:
        mark = parse_json((out_dir / MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        mark = None
    source = mark.get("data") if isinstance(mark, dict) else None
    if source == str(data_dir.resolve()):
        return  # a rerun on the same data: its own earlier copy, replaced manifest by manifest
    held = sorted(out_dir.glob("*/*.jsonl"))
    if not held:
        return
    whose = f"the normalized copy of {source}" if isinstance(source, str) else "manifests normalize-text did not write"
    raise ManifestError(f"--out {out_dir}: already holds {whose} (e.g. {held[0].relative_to(out_dir)}); "
                        f"give a new or empty folder")


def normalize_corpus(data_dir: str | Path, out_dir: str | Path) -> NormalizeSummary:
    """Write OUT/<lang>/<split>.jsonl for every DIR/<lang>/<split>.jsonl, its texts normalised."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise ManifestError(f"{data_dir}: no such data folder")
    manifests = sorted(data_dir.glob("*/*.jsonl"))
    if not manifests:
        raise ManifestError(f"{data_dir}: no manifests <lang>/<split>.jsonl found")
    if out_dir.resolve() == data_dir.resolve():
        raise ManifestError(f"--out {out_dir}: is the data folder itself; give another folder (the original stays)")
    _check_out(out_dir, data_dir)
    summary = NormalizeSummary()
    for path in manifests:
        dest = out_dir / path.parent.name / path.name
        records = []
        for record in read_records(path):  # a bad line is one error naming file and line, before anything is written
            utt = utterance_from_record(record, path.resolve().parent)
            record = {**record, "audio": audio_field(utt.audio, dest.resolve().parent)}
            if utt.text is not None:
                text = normalize_text(utt.text, utt.lang)  # the line's own language: Turkish I is ı
                summary.changed += text != utt.text
                summary.symbols_before.update(utt.text.replace(" ", ""))
                summary.symbols_after.update(text.replace(" ", ""))
                if utt.text.strip() and not text:
                    summary.emptied.append(utt.id)
                record["text"] = text
            records.append(record)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if summary.manifests == 0:  # the mark first: a stop halfway leaves a folder a rerun may write into again
            write_json(out_dir / MARK, {"written_by": "xlsr data normalize-text", "data": str(data_dir.resolve())})
        write_jsonl(dest, records)
        summary.manifests += 1
        summary.utterances += len(records)
    return summary

