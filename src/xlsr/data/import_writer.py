"""The output side of the importers (Common Voice, fairseq, folder, lhotse, Hugging Face): FLAC files, manifests,
skipped items.

A reader hands each item over as an utterance (`add`), as decoded audio to store (`write_audio`), or as
bad (`skip`, with its location). Utterances go to a spool file per (lang, split) as they come, so a
10M-row import does not hold them in memory; `finish` turns each spool into DIR/<lang>/<split>.jsonl
once every item is read, and refuses when more than `max_bad_share` of the items were bad, the cap the data
loaders apply per epoch. Audio goes to DIR/<lang>/audio/<split>/<NNNN>/<id>.flac (beside the manifest, as
`xlsr synth` does, so the corpus folder can move).

A re-import into the same folder must not damage the corpus already there until it has a whole new one, and a
kill at any moment must leave one corpus, the old or the new, never a manifest over audio it does not list. The
new audio is written under DIR/<lang>/audio/.<split>.importing, a folder the old manifest does not refer to.
`finish` writes the new manifest, its lines pointing into that folder, over the old one: that atomic rename is
the one commit. (A first import of a split, with no manifest to protect, renames its folder to audio/<split> and
then writes the manifest, the commit; a kill between leaves audio that no manifest lists, removed by the next
import of that split.) After it the old audio/<split> is removed, the new files are hard-linked there (copied where the
filesystem has no hard links), the manifest is rewritten to point there (another atomic rename: both folders hold
the same files meanwhile) and the hidden folder goes. A refused, failed or interrupted import thus leaves the
earlier manifests and the audio they list as they were, or, once committed, the new ones.

Only the writer's own audio/<split> is ever replaced: one that holds only what write_audio puts there (folders
0000, 0001, ... of .flac files). Where audio/<split> holds anything else (a user's recordings, imported where they
lie or put there by hand) an import's first file for that split is refused, before it is written; so is an import
that lists, where they lie, files in a folder it replaces with the audio it writes. The same rule holds when a
killed import's audio is settled: it is refused, the folder kept, until its files have been moved.

An import that writes no audio for a split (its manifest references files where they lie) over one that did leaves
audio/<split> unlisted once its manifest is committed. The folder goes then if the writer made it (it holds only
what write_audio puts there: folders 0000, 0001, ... of .flac files) and no manifest in DIR lists a file in it
(compared as files, not as path strings, so the new manifest's files stay whatever path names them). A mark,
audio/.<split>.unlisted, is made before the commit and removed after the folder: an import killed between finds it.

An import replaces only manifests an import wrote: DIR/import.json lists them (each import adds its own before the
first is committed), and a manifest it does not list (`xlsr synth`'s, a user's, another tool's) is refused at the
import's first item for that split, before anything is written.

Whatever a killed import left is settled by the next import into DIR, before it writes anything: a hidden folder
its split's manifest points into is moved to audio/<split> as above, any other (and a spool file) is removed, and a
split's mark has its audio/<split> removed under the rule above (before the commit its old manifest still lists the
folder, which thus stays). It also completes a swap an earlier version of this writer left half done (renamed
folders audio/.<split>.replaced and a whole manifest .<split>.jsonl.ready). One import at a time writes into DIR:
it holds DIR/.lock (folder_lock.py), and a second is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
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

from xlsr.atomic import json_line, write_file, write_json, write_text
from xlsr.data.manifest import Utterance, audio_field, manifest_path, write_manifest
from xlsr.errors import XlsrError
from xlsr.folder_lock import folder_lock
from xlsr.jsonl import parse_json
from xlsr.rates import SAMPLE_RATE

log = logging.getLogger(__name__)

SKIPPED_FILE = "import_skipped.txt"
FILES_PER_FOLDER = 10_000  # <lang>/audio/<split>/0000/...: folders of a 10M-row import stay listable
SHOWN_SKIPS = 20  # skipped items logged one by one; all of them go to SKIPPED_FILE
DEFAULT_MAX_BAD_SHARE = 0.05  # as the data loaders' max_bad_share
LONG_SECONDS = 30  # an utterance longer is a recording to cut: the import summary says how many there are
STAGING = ".{split}.importing"  # DIR/<lang>/audio/.<split>.importing: this import's audio until it is settled
SPOOL = ".{split}.jsonl.importing"  # DIR/<lang>/.<split>.jsonl.importing: this import's utterances until `finish`
UNLISTED = ".{split}.unlisted"  # DIR/<lang>/audio/.<split>.unlisted: audio/<split> goes once no manifest lists it
# left only by earlier versions, which swapped folders by two renames: the old audio while it was swapped out, and
# the new manifest, whole, beside the old one
REPLACED = ".{split}.replaced"
READY = ".{split}.jsonl.ready"
# DIR/import.json: the manifests imports wrote, <lang>/<split>.jsonl, which a later import may replace (no other)
MARK = "import.json"
WRITTEN_BY = "xlsr data import"


class ImportRefused(XlsrError):
    """An import that cannot go on at all, not one bad item: the importers let it through instead of skipping."""


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
    long: int = 0  # utterances longer than LONG_SECONDS
    longest: int = 0  # samples of the longest utterance

    def line(self) -> str:
        """One line for the CLI: `imported 98 cuts from X into Y: en/train 60 (25.3 min), ...; 2 skipped (...)`."""
        parts = ", ".join(f"{lang}/{split} {n} ({_duration(self.samples[lang, split] / SAMPLE_RATE)})"
                          for (lang, split), n in sorted(self.counts.items()))
        text = f"imported {sum(self.counts.values())} {self.unit} from {self.source} into {self.out_dir}: {parts}"
        if self.audio_written:  # none for importers that only reference files where they lie
            text += f"; {self.audio_written} audio files written"
        if self.skipped:
            text += f"; {self.skipped} skipped (listed in {self.out_dir / SKIPPED_FILE})"
        if self.long:  # whole recordings (a folder import keeps each file whole): said before a run finds out
            text += (f"; {self.long} longer than {LONG_SECONDS} s (the longest {_duration(self.longest / SAMPLE_RATE)}):"
                     f" pretraining trains on a crop of at most --max-sample-size of such a file each time it draws "
                     f"it, and fine-tuning skips those longer than --max-tokens; cut long recordings into utterances "
                     f"to train on all of them")
        return text


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else \
        f"{seconds:.1f} s"


def safe_name(item_id: str) -> str:
    """An item id as a file name: path separators and unusual characters become '_'."""
    return re.sub(r"[^\w.-]", "_", item_id).lstrip(".")[:150] or "item"


class ImportWriter:
    """Collects the utterances of one import, stores their audio, counts bad items, writes the manifests.

    Used as a context manager, which holds the lock on DIR and first settles what a killed import left (module
    docstring): leaving it by an exception removes the spool files and the audio written (no manifest is written,
    the earlier corpus stays), except the audio of a split whose new manifest is already in place.
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
        self.names: dict[tuple[str, str], TakenNames] = defaultdict(TakenNames)  # each split's ids so far
        self.bad: list[str] = []
        self.bad_items = 0  # items the lines of `bad` stand for: a shard cut short is one line for its lost rows
        self.committed: set[tuple[str, str]] = set()  # (lang, split) whose new manifest is in place
        self.marked: set[tuple[str, str]] = set()  # (lang, split) whose audio/<split> is to go after the commit
        self.replacing: dict[tuple[str, str], str] = {}  # (lang, split) it writes audio for: audio/<split> resolved
        self.referenced: dict[str, tuple[str, str]] = {}  # folder of a file referenced where it lies: (file, resolved)
        self.just_written: str | None = None  # the path write_audio returned last, which `add` then receives
        self.imported: set[str] = set()  # DIR/import.json's manifests: those an import wrote (read on entering)
        self.checked: set[tuple[str, str]] = set()  # (lang, split) whose manifest this import may write
        self._lock = folder_lock(self.out_dir, "another import is writing into it; wait for it to end")

    def __enter__(self) -> ImportWriter:
        self._lock.__enter__()
        try:
            settle_leftovers(self.out_dir)
            self.imported = imported_manifests(self.out_dir)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            for f in self.spools.values():
                with contextlib.suppress(OSError):  # flushing on a full disk: the spool goes anyway
                    f.close()
                if kind is not None:
                    Path(f.name).unlink(missing_ok=True)
            if kind is not None:
                for lang, split in set(self.stored) - self.committed:  # a committed split's manifest lists its audio
                    shutil.rmtree(self._audio(lang, STAGING.format(split=split)), ignore_errors=True)
                for lang, split in self.marked - self.committed:  # the old manifest still lists audio/<split>
                    self._audio(lang, UNLISTED.format(split=split)).unlink(missing_ok=True)
                for lang in {lang for lang, _ in [*self.spools, *self.stored]}:
                    _remove_if_empty(self.out_dir / lang / "audio")
                    _remove_if_empty(self.out_dir / lang)  # a language folder this import made and left empty
        finally:
            self._lock.__exit__(kind, value, traceback)

    def unique_id(self, item_id: str, lang: str, split: str) -> str:
        """`item_id` made a file name, with `-2`, `-3`, ... when the split already has it (so the name is its
        manifest id, unique, and its file's name in its folder)."""
        name = base = safe_name(item_id)
        taken = self.names[lang, split]
        taken.enter_folder(self.stored[lang, split] // FILES_PER_FOLDER)
        n = 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        return name

    def write_audio(self, x: np.ndarray, utt_id: str, lang: str, split: str) -> Path:
        """Store 16 kHz mono samples (16-bit FLAC) for DIR/<lang>/audio/<split>/<NNNN>/<id>.flac, the path returned
        (the file is there once `finish` has put this import's audio in place)."""
        if (lang, split) not in self.replacing:  # the split's first file: is audio/<split> the writer's to replace?
            self._check_manifest(lang, split)
            self.replacing[lang, split] = self._replaceable(lang, split)
        folder = self.stored[lang, split] // FILES_PER_FOLDER
        staging = self._audio(lang, STAGING.format(split=split))  # a killed import's was settled by __enter__
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
        self.just_written = str(path)
        return path

    def _check_manifest(self, lang: str, split: str) -> None:
        """ImportRefused when DIR/<lang>/<split>.jsonl, which this import is to write, is there and no import wrote it
        (DIR/import.json does not list it): `xlsr synth`'s manifest, a user's own."""
        if (lang, split) in self.checked:
            return
        path = manifest_path(self.out_dir, lang, split)
        if os.path.lexists(path) and _mark_entry(lang, split) not in self.imported:
            raise ImportRefused(f"{path}: a manifest no import wrote ({self.out_dir / MARK} does not list it: xlsr "
                                f"synth's, your own, or an import's by an xlsr before 2026-12-07), which importing "
                                f"{lang}/{split} would replace; move it elsewhere, or import into another --out")
        self.checked.add((lang, split))

    def _replaceable(self, lang: str, split: str) -> str:
        """audio/<split>, resolved, checked before this import's audio is to replace it: ImportRefused when it holds
        what the writer did not put there, or files this import lists where they lie."""
        final = self._audio(lang, split)
        _check_replaceable(final, "importing audio into it would replace them")
        resolved = os.path.realpath(final)
        for audio, folder in self.referenced.values():
            _check_outside(audio, folder, final, resolved)
        return resolved

    def _reference(self, audio: str) -> None:
        """Note a file this import references where it lies: ImportRefused when a folder it replaces holds it."""
        given = os.path.dirname(os.path.abspath(audio))
        if given in self.referenced:  # checked when first seen, and by each audio folder this import took on since
            return
        folder = os.path.realpath(given)
        self.referenced[given] = audio, folder
        for (lang, split), resolved in self.replacing.items():
            _check_outside(audio, folder, self._audio(lang, split), resolved)

    def _audio(self, lang: str, name: str) -> Path:
        """DIR/<lang>/audio/<name>."""
        return self.out_dir / lang / "audio" / name

    def add(self, utt: Utterance, split: str) -> None:
        """One imported utterance of `split`."""
        key = utt.lang, split
        if utt.audio != self.just_written:  # a file referenced where it lies, not the audio this import wrote
            self._reference(utt.audio)
        self.just_written = None
        try:
            if key not in self.spools:
                self._check_manifest(*key)
                spool = self.out_dir / utt.lang / SPOOL.format(split=split)
                spool.parent.mkdir(parents=True, exist_ok=True)
                self.spools[key] = open(spool, "w", encoding="utf-8")
            self.spools[key].write(json_line(asdict(utt)))
        except OSError as exc:
            _naming(exc, manifest_path(self.out_dir, *key))  # the manifest this spool becomes
            raise
        self.summary.counts[key] += 1
        self.summary.samples[key] += utt.num_samples
        self.summary.long += utt.num_samples > LONG_SECONDS * SAMPLE_RATE
        self.summary.longest = max(self.summary.longest, utt.num_samples)

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
        else:  # the file lists the last import's skips: an earlier import's would be taken for this one's
            (self.out_dir / SKIPPED_FILE).unlink(missing_ok=True)
        if total == 0:
            raise XlsrError(f"{self.summary.source}: no {self.summary.unit} to import")
        if self.bad_items > self.max_bad_share * total:
            raise XlsrError(f"{self.summary.source}: {self.bad_items} of {total} {self.summary.unit} "
                            f"({self.bad_items / total:.1%}) could not be imported, more than max_bad_share="
                            f"{self.max_bad_share:g}; no manifest written (first: {self.bad[0]}; all in "
                            f"{self.out_dir / SKIPPED_FILE})")
        # listed before the first commit: a kill after it leaves manifests that the next import may replace
        self._mark({_mark_entry(lang, split) for lang, split in self.spools})
        for (lang, split), f in sorted(self.spools.items()):
            path = manifest_path(self.out_dir, lang, split)
            try:
                f.close()
            except OSError as exc:
                _naming(exc, path)
                raise
            spooled = _spooled(Path(f.name))
            final, staging = self._audio(lang, split), self._audio(lang, STAGING.format(split=split))
            first = self.stored[lang, split] and not path.exists()
            if first:  # no manifest to protect: the audio takes its name first, and the manifest is the commit
                _place_first(staging, final)
                try:
                    write_manifest(path, spooled)
                except BaseException:
                    shutil.rmtree(final, ignore_errors=True)  # listed by no manifest
                    raise
            else:
                if self.stored[lang, split]:  # its lines point into the folder this import wrote, not the old one's
                    spooled = (_moved(utt, final, staging) for utt in spooled)
                elif _written_by_import(final):  # an earlier import's audio, which this one's manifest may not list
                    self._audio(lang, UNLISTED.format(split=split)).touch()
                    self.marked.add((lang, split))
                write_manifest(path, spooled)  # the commit: an atomic rename over the old manifest
            self.committed.add((lang, split))
            Path(f.name).unlink()
            if self.stored[lang, split] and not first:
                settle_audio(self.out_dir, lang, split)
            elif (lang, split) in self.marked:
                settle_unlisted(self.out_dir, lang, split)
        for lang, split in set(self.stored) - set(self.spools):  # audio whose utterances all failed after all
            shutil.rmtree(self._audio(lang, STAGING.format(split=split)), ignore_errors=True)
        return self.summary

    def _mark(self, entries: set[str]) -> None:
        """DIR/import.json listing `entries` besides the earlier imports' manifests that are still there."""
        kept = {entry for entry in self.imported if (self.out_dir / entry).is_file()}
        if entries <= kept and len(kept) == len(self.imported):
            return  # listed already: the re-import of a split leaves the file as it was
        self.imported = kept | entries
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.out_dir / MARK, {"written_by": WRITTEN_BY, "manifests": sorted(self.imported)})


def imported_manifests(out_dir: Path) -> set[str]:
    """The manifests DIR/import.json lists (`<lang>/<split>.jsonl`), none when there is no such file; ImportRefused
    when the file is not an import's record (a user's own file of that name, which an import would overwrite)."""
    path = Path(out_dir) / MARK
    if not os.path.lexists(path):
        return set()
    try:
        mark = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        mark = None
    entries = mark.get("manifests") if isinstance(mark, dict) and mark.get("written_by") == WRITTEN_BY else None
    if not isinstance(entries, list):
        raise ImportRefused(f"{path}: not the list of imported manifests xlsr keeps there, which an import would "
                            f"overwrite; move it elsewhere, or import into another --out")
    return {e for e in entries if isinstance(e, str)}


def _mark_entry(lang: str, split: str) -> str:
    return f"{lang}/{split}.jsonl"


def settle_leftovers(out_dir: Path) -> None:
    """Settle what killed imports left in DIR (module docstring): run while holding DIR's lock, before writing."""
    for lang in sorted(audio.parent for audio in out_dir.glob("*/audio") if audio.is_dir()):
        for replaced in sorted(lang.glob(f"audio/{REPLACED.format(split='*')}")):
            _finish_old_swap(out_dir, lang.name, replaced.name[1:-len(".replaced")])
        for staging in sorted(lang.glob(f"audio/{STAGING.format(split='*')}")):
            split = staging.name[1:-len(".importing")]
            manifest = lang / f"{split}.jsonl"
            if _refers_to(manifest, _field_prefix(staging, manifest)):
                settle_audio(out_dir, lang.name, split)  # committed before the kill: the new corpus
            else:
                shutil.rmtree(staging)  # never committed: no manifest lists it
        for mark in sorted(lang.glob(f"audio/{UNLISTED.format(split='*')}")):
            settle_unlisted(out_dir, lang.name, mark.name[1:-len(".unlisted")])
        _remove_if_empty(lang / "audio")
    for spool in sorted(out_dir.glob(f"*/{SPOOL.format(split='*')}")):
        spool.unlink()


def settle_audio(out_dir: Path, lang: str, split: str) -> None:
    """Move a committed split's audio from audio/.<split>.importing to audio/<split>, its manifest pointing at
    each in turn, so that a kill at any step leaves the manifest listing files that are there."""
    folder = Path(out_dir) / lang / "audio"
    final, staging = folder / split, folder / STAGING.format(split=split)
    manifest = manifest_path(out_dir, lang, split)
    _check_replaceable(final, f"the audio {manifest} lists, in {staging}, is to replace them")
    shutil.rmtree(final, ignore_errors=True)  # the earlier import's: the manifest no longer lists it
    _link_tree(staging, final)
    _rewrite_audio(manifest, _field_prefix(staging, manifest), _field_prefix(final, manifest))
    shutil.rmtree(staging)


def settle_unlisted(out_dir: Path, lang: str, split: str) -> None:
    """Remove a marked split's audio/<split> if the writer made it and no manifest in DIR lists a file in it (as
    after its commit), then the mark. A split without a manifest keeps it: what replaced the manifest is unknown."""
    folder = Path(out_dir) / lang / "audio"
    final = folder / split
    if manifest_path(out_dir, lang, split).is_file() and _written_by_import(final) and not _listed(out_dir, final):
        shutil.rmtree(final)
    (folder / UNLISTED.format(split=split)).unlink(missing_ok=True)
    _remove_if_empty(folder)


def _check_replaceable(final: Path, why: str) -> None:
    """ImportRefused unless `final`, an audio/<split> that an import's audio is to replace, is absent or the
    writer's own (`_written_by_import`)."""
    if os.path.lexists(final) and not _written_by_import(final):
        raise ImportRefused(f"{final}: holds files that are not an import's audio (folders 0000, 0001, ... of "
                            f".flac), and {why}; move them elsewhere, or import into another --out")


def _check_outside(audio: str, folder: str, final: Path, resolved: str) -> None:
    """ImportRefused when `folder` (resolved), which holds `audio`, lies in `final` (`resolved`)."""
    if folder == resolved or folder.startswith(resolved + os.sep):
        raise ImportRefused(f"{audio}: this import lists it where it lies, in {final}, which it replaces with the "
                            f"audio it writes; copy the files it lists there elsewhere first, or import into "
                            f"another --out")


def _written_by_import(folder: Path) -> bool:
    """Whether `folder` holds only what write_audio puts in audio/<split>: folders 0000, 0001, ... of .flac files
    (not a user's own folder of audio that happens to lie there), and what file browsers leave beside them."""
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
        # scandir's entries know their type without a stat per file: a 10M-file folder is read in seconds
        with os.scandir(folder) as subs:
            for sub in subs:
                if _os_litter(sub):
                    continue
                if not re.fullmatch(r"[0-9]{4,}", sub.name) or not sub.is_dir(follow_symlinks=False):
                    return False
                with os.scandir(sub.path) as files:
                    if any(not (f.name.endswith(".flac") or _os_litter(f)) or not f.is_file(follow_symlinks=False)
                           for f in files):
                        return False
    except OSError:
        return False
    return True


# What file browsers leave in a folder they show (Finder's .DS_Store and ._ files, Explorer's Thumbs.db and
# desktop.ini): no one's audio, and no reason to refuse replacing the folder it lies in.
_OS_LITTER = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _os_litter(entry: os.DirEntry) -> bool:
    return (entry.name in _OS_LITTER or entry.name.startswith("._")) and entry.is_file(follow_symlinks=False)


def _listed(out_dir: Path, folder: Path) -> bool:
    """Whether a manifest DIR/<lang>/<name>.jsonl lists a file in `folder`, compared as files (device and inode), so
    that any path naming one counts; a listed file that cannot be read is not one of them."""
    files = set()
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            st = path.stat()
            files.add((st.st_dev, st.st_ino))
    for manifest in sorted(Path(out_dir).glob("*/*.jsonl")):
        with open(manifest, "rb") as f:
            for raw in f:
                record = _record(raw)
                if record is None:
                    continue
                try:
                    st = os.stat(manifest.parent / record["audio"])
                except (OSError, ValueError):  # missing, unreadable, or no path at all (a NUL in it)
                    continue
                if (st.st_dev, st.st_ino) in files:
                    return True
    return False


def _place_first(staging: Path, final: Path) -> None:
    """The first import of a split: its audio folder renamed to audio/<split>, where a killed first import may have
    left one that no manifest lists."""
    _check_replaceable(final, "importing audio into it would replace them")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)


def _finish_old_swap(out_dir: Path, lang: str, split: str) -> None:
    """Complete the swap an earlier version was killed in: it had renamed audio/<split> to .<split>.replaced, then
    .<split>.importing to audio/<split>, and would have renamed its whole new manifest .<split>.jsonl.ready over
    <split>.jsonl; until then the old manifest listed no audio, or the new audio in place of the old."""
    folder = Path(out_dir) / lang / "audio"
    final, staging = folder / split, folder / STAGING.format(split=split)
    ready = Path(out_dir) / lang / READY.format(split=split)
    if ready.is_file():  # the new manifest was not in place yet
        if not final.exists() and staging.exists():
            os.replace(staging, final)
        if final.exists():
            os.replace(ready, manifest_path(out_dir, lang, split))
        else:  # (not a state those versions left) the old audio back under the name the old manifest lists
            os.replace(folder / REPLACED.format(split=split), final)
            ready.unlink()
    replaced = folder / REPLACED.format(split=split)
    if os.path.lexists(replaced) and not _written_by_import(replaced):  # those versions set any folder aside
        raise ImportRefused(f"{replaced}: files an earlier version of xlsr set aside from {final} while importing "
                            f"audio there, not only its audio; move them elsewhere")
    shutil.rmtree(replaced, ignore_errors=True)


def _moved(utt: Utterance, final: Path, staging: Path) -> Utterance:
    """`utt` with its audio in `staging` if it was written for `final` (a file referenced where it lies is kept)."""
    try:
        utt.audio = str(staging / Path(utt.audio).relative_to(final))
    except ValueError:
        pass
    return utt


def _record(raw: bytes) -> dict | None:
    """A manifest line's object when it has a string `audio`, else None."""
    try:
        record = parse_json(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("audio"), str) else None


def _field_prefix(folder: Path, manifest: Path) -> str:
    """How `manifest`'s lines begin the audio field of a file in `folder`: as write_manifest writes it (relative, or
    absolute where the folder resolves outside the manifest's own, e.g. audio/ a link to another disk)."""
    return audio_field(folder, manifest.resolve().parent) + "/"


def _refers_to(manifest: Path, prefix: str) -> bool:
    """Whether a line of `manifest` has its audio under `prefix` (relative to the manifest's folder)."""
    if not manifest.is_file():
        return False
    with open(manifest, "rb") as f:
        return any((record := _record(raw)) is not None and record["audio"].startswith(prefix) for raw in f)


def _rewrite_audio(manifest: Path, old: str, new: str) -> None:
    """Rewrite `manifest` atomically, audio paths starting with `old` made to start with `new`, the rest as it was."""
    def write(tmp: Path) -> None:
        with open(manifest, "rb") as src, open(tmp, "wb") as dst:
            for raw in src:
                record = _record(raw)
                if record is not None and record["audio"].startswith(old):
                    record["audio"] = new + record["audio"][len(old):]
                    raw = json_line(record).encode()
                dst.write(raw)

    write_file(manifest, write)


def _link_tree(src: Path, dst: Path) -> None:
    """The files of `src` under the same names in `dst`: hard links, or copies where the filesystem has none."""
    for folder, _, files in os.walk(src):
        target = dst / Path(folder).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            try:
                os.link(Path(folder) / name, target / name)
            except OSError:
                shutil.copyfile(Path(folder) / name, target / name)


def _naming(exc: OSError, path: Path) -> None:
    """Make `exc` name `path` (a failed write() names no file; a staged one is not where the user looks)."""
    if exc.errno is not None:
        exc.filename, exc.filename2 = str(path), None


class TakenNames:
    """The names a split's items have taken, in 8 bytes a name past the folder being written: its folder's names as
    they are, the full folders' as a sorted array of 64-bit hashes (10 million rows: 80 MB, where the names
    themselves would take about 1 GB). Two names sharing a hash (about one pair in 10^8 among 10 million) only give
    the later one a `-2` it did not need."""

    def __init__(self) -> None:
        self.folder = 0
        self.current: set[str] = set()
        self.earlier = np.empty(0, np.uint64)  # sorted

    def enter_folder(self, folder: int) -> None:
        """Names go to folder number `folder` from now on: the full folder's names are kept as hashes."""
        if folder != self.folder:
            hashes = np.sort(np.array([_hash64(n) for n in self.current], np.uint64))
            self.earlier = np.insert(self.earlier, np.searchsorted(self.earlier, hashes), hashes)
            self.folder, self.current = folder, set()

    def __contains__(self, name: str) -> bool:
        if name in self.current:
            return True
        h = np.uint64(_hash64(name))
        i = int(np.searchsorted(self.earlier, h))
        return i < len(self.earlier) and self.earlier[i] == h

    def add(self, name: str) -> None:
        self.current.add(name)


def _hash64(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (other manifests or audio), or not there


def _spooled(path: Path):
    """The utterances of a spool file, one at a time (write_manifest iterates them once)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield Utterance(**parse_json(line))
