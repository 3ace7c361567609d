"""The output side of the importers (Common Voice, fairseq, folder, lhotse, Hugging Face): FLAC files, manifests,
skipped items.

A reader hands each item over as an utterance (`add`), as decoded audio to store (`write_audio`), or as
bad (`skip`, with its location). Utterances go to a spool file per (lang, split) as they come, so a
10M-row import does not hold them in memory; `finish` turns each spool into DIR/<lang>/<split>.jsonl
(atomically) once every item is read, and refuses when more than `max_bad_share` of the items were bad,
the cap the data loaders apply per epoch. Audio goes to DIR/<lang>/audio/<split>/<NNNN>/<id>.flac (beside
the manifest, as `xlsr synth` does, so the corpus folder can move); each file is written beside its place
and renamed into it, so an interrupted import leaves whole files only, which a rerun overwrites. Manifests
already in DIR stay untouched until `finish`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf

from xlsr.atomic import write_file, write_text
from xlsr.data.manifest import Utterance, manifest_path, write_manifest
from xlsr.errors import XlsrError
from xlsr.rates import SAMPLE_RATE

log = logging.getLogger(__name__)

SKIPPED_FILE = "import_skipped.txt"
FILES_PER_FOLDER = 10_000  # <lang>/audio/<split>/0000/...: folders of a 10M-row import stay listable
SHOWN_SKIPS = 20  # skipped items logged one by one; all of them go to SKIPPED_FILE
DEFAULT_MAX_BAD_SHARE = 0.05  # as the data loaders' max_bad_share


@dataclass
class ImportSummary:
    """What an import wrote: utterances and hours per (lang, split), items skipped, audio files written."""

    source: str
    out_dir: Path
    unit: str
    counts: Counter = field(default_factory=Counter)
    samples: Counter = field(default_factory=Counter)
    skipped: int = 0
    audio_written: int = 0

    def line(self) -> str:
        """One line for the CLI: `imported 98 cuts from X into Y: en/train 60 (25.3 min), ...; 2 skipped (...)`."""
        parts = ", ".join(f"{lang}/{split} {n} ({_duration(self.samples[lang, split] / SAMPLE_RATE)})"
                          for (lang, split), n in sorted(self.counts.items()))
        text = f"imported {sum(self.counts.values())} {self.unit} from {self.source} into {self.out_dir}: {parts}"
        if self.audio_written:  # none for importers that only reference files where they lie
            text += f"; {self.audio_written} audio files written"
        if self.skipped:
            text += f"; {self.skipped} skipped (listed in {self.out_dir / SKIPPED_FILE})"
        return text


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else \
        f"{seconds:.1f} s"


def safe_name(item_id: str) -> str:
    """An item id as a file name: path separators and unusual characters become '_'."""
    return re.sub(r"[^\w.-]", "_", item_id).lstrip(".")[:150] or "item"


class ImportWriter:
    """Collects the utterances of one import, stores their audio, counts bad items, writes the manifests.

    Used as a context manager: leaving it by an exception removes the spool files (no manifest is written).
    """

    def __init__(self, out_dir: str | Path, *, source: str, unit: str,
                 max_bad_share: float = DEFAULT_MAX_BAD_SHARE) -> None:
        if not 0 <= max_bad_share < 1:
            raise XlsrError(f"--max-bad-share must be in [0, 1), got {max_bad_share}")
        self.out_dir = Path(out_dir)
        self.max_bad_share = max_bad_share
        self.summary = ImportSummary(source, self.out_dir, unit)
        self.spools: dict[tuple[str, str], IO[str]] = {}
        self.stored: Counter = Counter()  # FLAC files per (lang, split): which folder the next one goes to
        self.names: dict[tuple[str, str, int], set[str]] = defaultdict(set)  # the current folder's names only
        self.bad: list[str] = []
        self.bad_items = 0  # items the lines of `bad` stand for: a shard cut short is one line for its lost rows

    def __enter__(self) -> ImportWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        for f in self.spools.values():
            f.close()
            if kind is not None:
                Path(f.name).unlink(missing_ok=True)
                try:
                    Path(f.name).parent.rmdir()  # a language folder this import made and left empty
                except OSError:
                    pass  # not empty: it holds other manifests or audio

    def unique_id(self, item_id: str, lang: str, split: str) -> str:
        """`item_id` made a file name, with `-2`, `-3`, ... when the folder its audio goes to already has it."""
        name = base = safe_name(item_id)
        taken = self.names[lang, split, self.stored[lang, split] // FILES_PER_FOLDER]
        n = 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        return name

    def write_audio(self, x: np.ndarray, utt_id: str, lang: str, split: str) -> Path:
        """Store 16 kHz mono samples as DIR/<lang>/audio/<split>/<NNNN>/<id>.flac (16-bit); its path."""
        folder = self.stored[lang, split] // FILES_PER_FOLDER
        self.names.pop((lang, split, folder - 1), None)  # a full folder's names are no longer needed
        path = self.out_dir / lang / "audio" / split / f"{folder:04d}" / f"{utt_id}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        # resampling can overshoot full scale a little; PCM conversion must not wrap those samples around
        pcm = np.clip(x, -1.0, 1.0)
        write_file(path, lambda tmp: sf.write(tmp, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16"))
        self.stored[lang, split] += 1
        self.summary.audio_written += 1
        return path

    def add(self, utt: Utterance, split: str) -> None:
        """One imported utterance of `split`."""
        key = utt.lang, split
        if key not in self.spools:
            spool = self.out_dir / utt.lang / f".{split}.jsonl.importing"
            spool.parent.mkdir(parents=True, exist_ok=True)
            self.spools[key] = open(spool, "w", encoding="utf-8")
        self.spools[key].write(json.dumps(asdict(utt), ensure_ascii=False) + "\n")
        self.summary.counts[key] += 1
        self.summary.samples[key] += utt.num_samples

    def skip(self, where: str, problem: str, count: int = 1) -> None:
        """A bad item, named by its location (`file:row 12`, `cut 'abc'`), left out and counted; `count` for a
        place that stands for several items (the rows of a shard that cannot be read past a break)."""
        self.bad.append(f"{where}: {problem}")
        self.bad_items += count
        if len(self.bad) <= SHOWN_SKIPS:
            log.warning("skipping %s: %s", where, problem)
        elif len(self.bad) == SHOWN_SKIPS + 1:
            log.warning("more items skipped; all are listed in %s at the end", self.out_dir / SKIPPED_FILE)

    def finish(self) -> ImportSummary:
        """Write the manifests (and the list of skipped items); XlsrError over the bad-share cap."""
        kept = sum(self.summary.counts.values())
        total = kept + self.bad_items
        self.summary.skipped = self.bad_items
        if self.bad:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.out_dir / SKIPPED_FILE, "".join(line + "\n" for line in self.bad))
        if total == 0:
            raise XlsrError(f"{self.summary.source}: no {self.summary.unit} to import")
        if self.bad_items > self.max_bad_share * total:
            raise XlsrError(f"{self.summary.source}: {self.bad_items} of {total} {self.summary.unit} "
                            f"({self.bad_items / total:.1%}) could not be imported, more than max_bad_share="
                            f"{self.max_bad_share:g}; no manifest written (first: {self.bad[0]}; all in "
                            f"{self.out_dir / SKIPPED_FILE})")
        for (lang, split), f in sorted(self.spools.items()):
            f.close()
            write_manifest(manifest_path(self.out_dir, lang, split), _spooled(Path(f.name)))
            Path(f.name).unlink()
        return self.summary


def _spooled(path: Path):
    """The utterances of a spool file, one at a time (write_manifest iterates them once)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield Utterance(**json.loads(line))
