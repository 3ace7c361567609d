"""The output side of the importers (Common Voice, fairseq, folder, lhotse, Hugging Face): FLAC files, manifests,
skipped items.

A reader hands each item over as an utterance (`add`), as decoded audio to store (`write_audio`), or as
bad (`skip`, with its location). Utterances go to a spool file per (lang, split) as they come, so a
10M-row import does not hold them in memory; `finish` turns each spool into DIR/<lang>/<split>.jsonl
once every item is read, and refuses when more than `max_bad_share` of the items were bad, the cap the data
loaders apply per epoch. Audio goes to DIR/<lang>/audio/<split>/<NNNN>/<id>.flac (beside the manifest, as
`xlsr synth` does, so the corpus folder can move).

A re-import into the same folder must not damage the corpus already there until it has a whole new one: the
audio is written under DIR/<lang>/audio/.<split>.importing, and `finish`, with the new manifest written beside
the old one, renames that folder to audio/<split> (the old one set aside) and the manifest over the old one,
then removes the old audio. A refused, failed or interrupted import thus leaves the earlier manifests and the
audio they list as they were (its staging folder is removed, or by the next import if it was killed); a rerun
starts over. One import at a time writes into DIR: it holds DIR/.lock (folder_lock.py), and a second is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf

from xlsr.atomic import write_text
from xlsr.data.manifest import Utterance, manifest_path, write_manifest
from xlsr.errors import XlsrError
from xlsr.folder_lock import folder_lock
from xlsr.rates import SAMPLE_RATE

log = logging.getLogger(__name__)

SKIPPED_FILE = "import_skipped.txt"
FILES_PER_FOLDER = 10_000  # <lang>/audio/<split>/0000/...: folders of a 10M-row import stay listable
SHOWN_SKIPS = 20  # skipped items logged one by one; all of them go to SKIPPED_FILE
DEFAULT_MAX_BAD_SHARE = 0.05  # as the data loaders' max_bad_share
STAGING = ".{split}.importing"  # DIR/<lang>/audio/.<split>.importing: this import's audio until `finish`
REPLACED = ".{split}.replaced"  # DIR/<lang>/audio/.<split>.replaced: the earlier import's, while it is swapped out


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

    Used as a context manager, which holds the lock on DIR: leaving it by an exception removes the spool files and
    the audio written (no manifest is written, the earlier corpus stays).
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
        self._lock = folder_lock(self.out_dir, "another import is writing into it; wait for it to end")

    def __enter__(self) -> ImportWriter:
        self._lock.__enter__()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            for (lang, split), f in self.spools.items():
                with contextlib.suppress(OSError):  # flushing on a full disk: the spool goes anyway
                    f.close()
                if kind is not None:
                    Path(f.name).unlink(missing_ok=True)
                    path = manifest_path(self.out_dir, lang, split)
                    path.with_name(f".{path.name}.ready").unlink(missing_ok=True)
            if kind is not None:
                for lang, split in self.stored:
                    shutil.rmtree(self._audio(lang, STAGING.format(split=split)), ignore_errors=True)
                for lang in {lang for lang, _ in [*self.spools, *self.stored]}:
                    _remove_if_empty(self.out_dir / lang / "audio")
                    _remove_if_empty(self.out_dir / lang)  # a language folder this import made and left empty
        finally:
            self._lock.__exit__(kind, value, traceback)

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
        """Store 16 kHz mono samples (16-bit FLAC) for DIR/<lang>/audio/<split>/<NNNN>/<id>.flac, the path returned
        (the file is there once `finish` has put this import's audio in place)."""
        folder = self.stored[lang, split] // FILES_PER_FOLDER
        self.names.pop((lang, split, folder - 1), None)  # a full folder's names are no longer needed
        staging = self._audio(lang, STAGING.format(split=split))
        if not self.stored[lang, split] and staging.exists():
            shutil.rmtree(staging)  # left by a killed import (the lock says no other one is running)
        staged = staging / f"{folder:04d}" / f"{utt_id}.flac"
        path = self._audio(lang, split) / staged.relative_to(staging)
        # resampling can overshoot full scale a little; PCM conversion must not wrap those samples around
        flac = io.BytesIO()
        sf.write(flac, np.clip(x, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        try:
            staged.parent.mkdir(parents=True, exist_ok=True)
            # written by Python, not libsndfile: a full disk is an OSError, not libsndfile's "error 2"
            staged.write_bytes(flac.getvalue())
        except OSError as exc:
            _naming(exc, path)  # the file the user will look for, not the staged one
            raise
        self.stored[lang, split] += 1
        self.summary.audio_written += 1
        return path

    def _audio(self, lang: str, name: str) -> Path:
        """DIR/<lang>/audio/<name>."""
        return self.out_dir / lang / "audio" / name

    def add(self, utt: Utterance, split: str) -> None:
        """One imported utterance of `split`."""
        key = utt.lang, split
        try:
            if key not in self.spools:
                spool = self.out_dir / utt.lang / f".{split}.jsonl.importing"
                spool.parent.mkdir(parents=True, exist_ok=True)
                self.spools[key] = open(spool, "w", encoding="utf-8")
            self.spools[key].write(json.dumps(asdict(utt), ensure_ascii=False) + "\n")
        except OSError as exc:
            _naming(exc, manifest_path(self.out_dir, *key))  # the manifest this spool becomes
            raise
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
            path = manifest_path(self.out_dir, lang, split)
            try:
                f.close()
            except OSError as exc:
                _naming(exc, path)
                raise
            ready = path.with_name(f".{path.name}.ready")  # the new manifest beside the old one, for the swap
            write_manifest(ready, _spooled(Path(f.name)))
            if self.stored[lang, split]:
                self._place_audio(lang, split)
            os.replace(ready, path)
            shutil.rmtree(self._audio(lang, REPLACED.format(split=split)), ignore_errors=True)
            Path(f.name).unlink()
        for lang, split in set(self.stored) - set(self.spools):  # audio whose utterances all failed after all
            shutil.rmtree(self._audio(lang, STAGING.format(split=split)), ignore_errors=True)
        return self.summary

    def _place_audio(self, lang: str, split: str) -> None:
        """Rename this import's audio folder to audio/<split>, the earlier one set aside (removed once the new
        manifest is in place): the old manifest lists the old audio up to the moment the two are swapped."""
        final, replaced = self._audio(lang, split), self._audio(lang, REPLACED.format(split=split))
        shutil.rmtree(replaced, ignore_errors=True)  # left by a killed import
        if final.exists():
            os.replace(final, replaced)
        os.replace(self._audio(lang, STAGING.format(split=split)), final)


def _naming(exc: OSError, path: Path) -> None:
    """Make `exc` name `path` (a failed write() names no file; a staged one is not where the user looks)."""
    if exc.errno is not None:
        exc.filename, exc.filename2 = str(path), None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (other manifests or audio), or not there


def _spooled(path: Path):
    """The utterances of a spool file, one at a time (write_manifest iterates them once)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield Utterance(**json.loads(line))
