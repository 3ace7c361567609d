"""`xlsr data check`: every utterance of some manifests decoded and judged as training reads it, before a long run.

Training finds a bad file only when it reaches it (data/batching.py): `load_audio` in a DataLoader worker, then
`checked_length` against the manifest's num_samples; a bad file is skipped and counted against --max-bad-share, and
a decoder that crashes (a segfault in libsndfile or mpg123) kills the worker reading it. This check decodes every
utterance the same way beforehand and judges each one (`judge`, a pure function) as one of

- `unreadable`: load_audio refused it (missing, not audio, damaged header, NaN samples, empty);
- `wrong_length`: decoded to a length other than the manifest's, beyond `length_tolerance` (`length_mismatch`, the
  rule and words of training's `checked_length`);
- `too_short`: only with `min_sample_size` > 0: fewer samples once decoded (and cut to the manifest's length, as
  checked_length cuts it) than pretraining's --min-sample-size, so pretraining skips it;
- `crashed`: the decoder killed its process (a signal, or an exit), hung (no answer in `decode_timeout` seconds:
  its worker is stopped), or raised something other than an AudioError (which would end a training run too).

The files are decoded in worker processes (`DecoderPool`, data/decoder_pool.py). Each worker decodes the files it
is sent in the order sent and answers each before the next, so the parent always knows which file a worker is
decoding: the oldest one sent and not answered. A worker that dies charges that file, as `crashed` with the
signal's name, and a fresh worker takes the rest of what it had been sent. Workers ignore SIGINT and SIGTERM
(worker_signals.py): Ctrl-C stops the parent, which stops them. A decoder that hangs on a file is stopped after
`decode_timeout` seconds, and the file is `crashed` too ("decoder hung").

Each judged utterance is appended to REPORT.partial (one JSON line, flushed) as it is judged; its first line
records the manifests (resolved paths and the fingerprints their utterance index was built from) and
`min_sample_size`. The same command after a stop (Ctrl-C, a kill, a lost machine) reads it and decodes only the
utterances not judged yet; a line torn by a kill is cut off. A REPORT.partial of other manifests, of manifests
changed since, or of another `min_sample_size` is refused in one line (nothing is mixed, nothing removed): run
that check again to finish it, or delete the file to start over. Once every utterance is judged, REPORT is written
atomically, one line per bad utterance in manifest and line order, and REPORT.partial is removed.

With `clean_dir`, a copy of each manifest without its bad utterances (nor its invalid lines, which training skips
anyway) goes to CLEAN/<lang>/<split>.jsonl (<lang> and <split> from the manifest's folder and name), each kept line
with every field it had and its audio path rewritten to stay valid from the copy (relative under the copy's
folder, else absolute). The originals are untouched: a clean folder that is the data folder, or whose copy would be
written over a checked manifest or over manifests this check did not write (CLEAN/data-check.json lists what it
wrote), is refused before any decoding.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from xlsr.atomic import json_line, write_file, write_json, write_jsonl
from xlsr.data.audio import length_mismatch, load_audio
from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S, DecoderPool, decoder_failed
from xlsr.data.index_cache import fingerprint, open_manifest
from xlsr.data.manifest import audio_field, check_plain_name
from xlsr.data.utterance_index import Table
from xlsr.errors import AudioError, ManifestError, XlsrError, listing
from xlsr.jsonl import json_object, parse_json, torn_settings_line
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE

KINDS = ("unreadable", "wrong_length", "too_short", "crashed")
CLEAN_MARK = "data-check.json"  # in a clean folder: which copies this check wrote (a rerun may replace only those)
Key = tuple[int, int]  # (manifest, row of its index)


@dataclass(frozen=True)
class Bad:
    """Why an utterance is bad: one of KINDS, and a message naming its audio file."""

    kind: str
    message: str


@dataclass(frozen=True)
class Decoded:
    """What decoding one file gave: its length in samples, or the failure that gave none."""

    samples: int = 0
    failure: Bad | None = None


# --- judging: pure ---------------------------------------------------------------------------------------------

def judge(decoded: Decoded, listed: int, where: str, min_sample_size: int = 0,
          listed_by: str = "the manifest", source: str | None = None) -> Bad | None:
    """The verdict training would reach on a file (`source`, as length_mismatch takes it) decoded to `decoded` whose
    manifest (`listed_by`: "its .json" for a shard's member) lists `listed` samples (None: good); `min_sample_size`
    > 0 also calls too short what pretraining would skip."""
    if decoded.failure is not None:
        return decoded.failure
    wrong = length_mismatch(decoded.samples, listed, where, listed_by, source)
    if wrong is not None:
        return Bad("wrong_length", wrong)
    kept = min(decoded.samples, listed)  # what checked_length keeps
    if kept < min_sample_size:
        return Bad("too_short", f"{where}: {kept} samples ({kept / SAMPLE_RATE:.2f} s) once decoded, fewer than "
                                f"--min-sample-size {min_sample_size}: pretraining skips it")
    return None


# --- decoding: in this process or in a worker --------------------------------------------------------------------

def decode_length(decode: Callable[[str], np.ndarray], path: str) -> Decoded:
    """Decode `path` with `decode` (load_audio): its length, or why it has none."""
    try:
        return Decoded(samples=len(decode(path)))
    except AudioError as exc:
        return Decoded(failure=Bad("unreadable", str(exc)))
    except Exception as exc:  # noqa: BLE001 - anything else ends a training run's worker: reported, not raised
        return Decoded(failure=Bad("crashed", decoder_failed(path, exc)))


def _crashed(line: str) -> Decoded:
    """The verdict on a file whose decoder killed its worker (DecoderPool's line naming the file and how)."""
    return Decoded(failure=Bad("crashed", line))


# --- choosing the manifests ------------------------------------------------------------------------------------

def corpus_manifests(data_dir: str | Path, splits: Sequence[str] | None = None) -> list[Path]:
    """DIR/<lang>/<split>.jsonl for `splits` (None: every split found), sorted; ManifestError for a missing
    folder, a split no language has, or no manifest at all."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ManifestError(f"{data_dir}: no such data folder")
    found = sorted(data_dir.glob("*/*.jsonl"))
    if splits is None:
        chosen = found
    else:
        if not splits:
            raise ManifestError("--splits: give at least one split name")
        for split in splits:
            check_plain_name("split", split)
        missing = [s for s in splits if not any(p.stem == s for p in found)]
        if missing:
            have = sorted({p.stem for p in found})
            raise ManifestError(f"{data_dir}: no manifests <lang>/<split>.jsonl for split(s) {', '.join(missing)} "
                                f"(found: {', '.join(have) or 'none'})")
        chosen = [p for p in found if p.stem in splits]
    if not chosen:
        raise ManifestError(f"{data_dir}: no manifests <lang>/<split>.jsonl found")
    return chosen


# --- the check --------------------------------------------------------------------------------------------------

class CheckStopped(KeyboardInterrupt):
    """Ctrl-C during a check: what was judged is kept; the message says how much, where, and how to go on."""


@dataclass
class ManifestSummary:
    """One manifest's check: utterances judged, their hours (manifest lengths), bad ones by kind, bad lines."""

    manifest: str
    files: int = 0
    samples: int = 0
    bad: Counter = field(default_factory=Counter)
    bad_lines: int = 0
    bad_lines_listed: str = ""

    def line(self) -> str:
        bad = sum(self.bad.values())
        kinds = ", ".join(f"{self.bad[k]} {k}" for k in KINDS if self.bad[k])
        text = (f"{self.manifest}: {self.files} files, {self.samples / SAMPLE_RATE / 3600:.3f} h checked; "
                + (f"{bad} bad ({kinds})" if bad else "none bad"))
        if self.bad_lines:
            text += f"; {self.bad_lines} invalid manifest line(s), listed in {self.bad_lines_listed}"
        return text


@dataclass
class CheckReport:
    """What a finished check found, per manifest, and where it wrote it."""

    out: Path
    manifests: list[ManifestSummary]
    clean_dir: Path | None = None

    @property
    def bad(self) -> int:
        return sum(sum(m.bad.values()) for m in self.manifests)

    @property
    def any_bad(self) -> bool:
        """Any bad utterance, or any invalid manifest line."""
        return self.bad > 0 or any(m.bad_lines for m in self.manifests)

    def lines(self) -> list[str]:
        files = sum(m.files for m in self.manifests)
        hours = sum(m.samples for m in self.manifests) / SAMPLE_RATE / 3600
        total = (f"checked {files} files ({hours:.3f} h) in {len(self.manifests)} manifest(s): {self.bad} bad, "
                 f"listed in {self.out}")
        clean = ([f"manifests without the bad utterances in {self.clean_dir}"] if self.clean_dir is not None else [])
        return [m.line() for m in self.manifests] + [total] + clean


def check_audio(manifests: Sequence[str | Path], out: str | Path, *, workers: int, min_sample_size: int = 0,
                clean_dir: str | Path | None = None, data_dir: str | Path | None = None,
                decode: Callable[[str], np.ndarray] | None = None, decode_timeout: float | None = DEFAULT_TIMEOUT_S,
                show_progress: bool = True) -> CheckReport:
    """Decode and judge every utterance of `manifests` (module docstring), in `workers` processes (0: in this one,
    with no crash isolation; a file a worker spends more than `decode_timeout` seconds on, None: no limit, is
    judged crashed); REPORT `out`, and clean copies in `clean_dir` if given (`data_dir`, the corpus the
    manifests come from, is refused as one). `decode`: load_audio unless given (tests). Ctrl-C raises CheckStopped."""
    if workers < 0:
        raise XlsrError(f"workers: must be 0 or more, got {workers}")
    if min_sample_size < 0:
        raise XlsrError(f"--min-sample-size: must be 0 or more, got {min_sample_size}")
    paths = _distinct([Path(p) for p in manifests])
    tables = [open_manifest(p, max_bad_share=1.0).tables[0] for p in paths]  # bad lines: warned, never refused
    for path, table in zip(paths, tables):
        if not len(table) and table.meta.get("bad", 0):  # an audio file or a folder's notes given as a manifest
            raise ManifestError(f"{path}: none of its {table.meta['bad']} line(s) is an utterance: not a JSONL "
                                f"manifest? (they are listed in {Path(table.folder or '') / 'bad_lines.txt'})")
    out = _check_out(Path(out), paths)
    clean = None if clean_dir is None else _check_clean_dir(Path(clean_dir), paths, data_dir)
    settings = {"manifests": [{"path": os.path.realpath(p), "index_of": t.meta.get("manifest")}
                              for p, t in zip(paths, tables)], "min_sample_size": min_sample_size}
    kept = _Kept(out, settings, [len(t) for t in tables])
    try:
        _judge_all(tables, kept, workers=workers, decode=decode or load_audio, min_sample_size=min_sample_size,
                   timeout=decode_timeout, show_progress=show_progress)
    except KeyboardInterrupt:
        total = sum(len(t) for t in tables)
        raise CheckStopped(f"{kept.count} of {total} files checked, kept in {kept.path}; the same command goes on "
                           f"from there") from None
    finally:
        kept.close()
    _check_unchanged(paths, tables, kept.path)
    write_jsonl(out, _report_records(paths, tables, kept.bad))
    if clean is not None:
        _write_clean(clean, paths, tables, kept.bad)
    kept.path.unlink(missing_ok=True)
    return CheckReport(out, _summaries(paths, tables, kept.bad), clean)


def _distinct(paths: list[Path]) -> list[Path]:
    """`paths` without a second spelling of a manifest already there (the same file through --data and --manifest)."""
    seen, kept = set(), []
    for p in paths:
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            kept.append(p)
    return kept


def _check_out(out: Path, manifests: list[Path]) -> Path:
    if os.path.realpath(out) in {os.path.realpath(p) for p in manifests}:
        raise XlsrError(f"--out {out}: is a manifest being checked; give another file name for the report")
    return check_report_out(out)


def check_report_out(out: Path) -> Path:
    """`out` as a check's REPORT: XlsrError for a folder, and for an existing file that is not a report of a check
    (an audio file, a manifest, anything else of the user's: the report would replace it). An earlier report, empty
    or of JSON lines with a `kind`, is replaced by the new one."""
    if out.is_dir():
        raise XlsrError(f"--out {out}: is a folder; give a file name for the report")
    try:
        with open(out, "rb") as f:
            first = f.readline(1 << 16)
    except (FileNotFoundError, NotADirectoryError):  # nothing there (a file in the way of its folder: said at writing)
        return out
    except OSError as exc:
        raise XlsrError(f"--out {out}: cannot be read to see what it is ({exc.strerror}); give another file name for "
                        f"the report") from None
    if first and "kind" not in json_object(first):
        raise XlsrError(f"--out {out}: exists and is not a report of xlsr data check (it is left as it is); give "
                        f"another file name for the report")
    return out


def _clean_copy(clean_dir: Path, manifest: Path) -> Path:
    """Where the clean copy of `manifest` goes: CLEAN/<its folder's name>/<its name>."""
    return clean_dir / manifest.parent.name / manifest.name


def _check_clean_dir(clean_dir: Path, manifests: list[Path], data_dir: str | Path | None) -> Path:
    """ManifestError, before any decoding, for a clean folder whose copies would replace what is not ours to replace."""
    where = f"--write-clean {clean_dir}"
    if data_dir is not None and clean_dir.resolve() == Path(data_dir).resolve():
        raise ManifestError(f"{where}: is the data folder itself; give another folder (the originals stay as they are)")
    if clean_dir.exists() and not clean_dir.is_dir():
        raise ManifestError(f"{where}: exists and is not a folder")
    real = {os.path.realpath(p): p for p in manifests}
    copies: dict[str, str] = {}
    for p in manifests:
        dest = _clean_copy(clean_dir, p)
        if os.path.realpath(dest) in real:
            raise ManifestError(f"{where}: its copy of {p} would be written over the manifest "
                                f"{real[os.path.realpath(dest)]} itself; give another folder")
        rel = dest.relative_to(clean_dir).as_posix()
        if rel in copies:
            raise ManifestError(f"{where}: {copies[rel]} and {p} would both be copied to {rel} (the same "
                                f"<lang>/<split>.jsonl); check them one at a time")
        copies[rel] = str(p)
    if not clean_dir.is_dir():
        return clean_dir
    ours = _clean_mark(clean_dir)
    for held in sorted(clean_dir.glob("*/*.jsonl")):
        rel = held.relative_to(clean_dir).as_posix()
        if rel not in ours or (rel in copies and ours[rel] != os.path.realpath(copies[rel])):
            whose = f"the clean copy of {ours[rel]}" if rel in ours else "a manifest xlsr data check did not write"
            raise ManifestError(f"{where}: already holds {rel}, {whose}; give a new or empty folder")
    return clean_dir


def _clean_mark(clean_dir: Path) -> dict[str, str]:
    """{<lang>/<split>.jsonl: its source manifest, resolved} of the copies this check wrote in `clean_dir`."""
    try:
        mark = parse_json((clean_dir / CLEAN_MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    copies = mark.get("copies") if isinstance(mark, dict) and mark.get("written_by") == "xlsr data check" else None
    return {k: v for k, v in copies.items() if isinstance(v, str)} if isinstance(copies, dict) else {}


def open_results(out: Path, partial: Path, settings: dict, read_earlier: Callable[[], int]):
    """`partial` (REPORT.partial of the report `out`) open for appending, at the end of an earlier run's results read
    by `read_earlier` (it returns where their last whole line ends; 0: none, started anew), a line a kill cut short
    cut off; a new file begins with the settings line. XlsrError naming --out where it cannot be written."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        end = read_earlier() if partial.is_file() else 0
        file = open(partial, "r+b" if end else "wb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        if isinstance(exc, NotADirectoryError | FileExistsError):  # as cli/main.py words it
            reason = "a file is in the way where a folder is needed"
        raise XlsrError(f"--out {out}: cannot write there ({reason})") from None
    if end:
        file.truncate(end)  # a line a kill cut short: cut off, so the next result has a line of its own
        file.seek(end)
    else:
        file.write(json_line({"settings": settings}).encode("utf-8"))
        file.flush()
    return file


class _Kept:
    """REPORT.partial: the settings line, then a line per judged utterance, on disk as soon as it is judged. In
    memory: a flag per utterance (judged or not) and the bad ones' verdicts, not an object per utterance."""

    def __init__(self, out: Path, settings: dict, sizes: list[int]) -> None:
        self.path = out.with_name(out.name + ".partial")
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file
        self.judged = [np.zeros(n, dtype=bool) for n in sizes]  # per manifest, per row of its index
        self.bad: dict[Key, Bad] = {}
        self.count = 0
        self._file = open_results(out, self.path, self.settings, self._read)

    def _read(self) -> int:
        """Read an earlier run's results (XlsrError unless made with these settings); where its last whole line ends."""
        with open(self.path, "rb") as f:
            first = f.readline()
            if torn_settings_line(first):
                return 0  # torn in its first line, before any result (or empty): started anew
            settings = json_object(first).get("settings")
            if not isinstance(settings, dict):
                raise XlsrError(f"{self.path}: not a file of results kept by xlsr data check (its first line records "
                                f"no settings); it is left as it is: move it away or give another --out")
            self._check_settings(settings)
            end = len(first)
            for line in f:
                record = json_object(line) if line.endswith(b"\n") else {}
                if "at" not in record:
                    break  # torn by a kill: cut off here
                self._keep(tuple(record["at"]), Bad(record["kind"], record["message"]) if "kind" in record else None)
                end += len(line)
        return end

    def _check_settings(self, made_with: dict) -> None:
        if made_with == self.settings:
            return
        was = [m["path"] for m in made_with.get("manifests", [])]
        now = [m["path"] for m in self.settings["manifests"]]
        if was != now:
            why = f"of other manifests ({listing(was, 3)})"
        elif made_with.get("manifests") != self.settings["manifests"]:
            changed = [a["path"] for a, b in zip(made_with["manifests"], self.settings["manifests"]) if a != b]
            why = f"made before {listing(changed, 3)} changed"
        else:
            why = f"made with --min-sample-size {made_with.get('min_sample_size')}"
        raise XlsrError(f"{self.path}: the results of an earlier check {why}; run that check again to finish it, "
                        f"or delete the file to start over")

    def add(self, key: Key, bad: Bad | None) -> None:
        """Keep one verdict (on disk at once)."""
        record = {"at": list(key)} if bad is None else {"at": list(key), "kind": bad.kind, "message": bad.message}
        with ctrl_c_held():  # on disk and counted, or neither: Ctrl-C's line then says what a rerun finds
            self._file.write(json_line(record).encode("utf-8"))
            self._file.flush()
            self._keep(key, bad)

    def _keep(self, key: Key, bad: Bad | None) -> None:
        manifest, row = key
        self.count += not self.judged[manifest][row]
        self.judged[manifest][row] = True
        if bad is not None:
            self.bad[key] = bad

    def close(self) -> None:
        self._file.close()


def _judge_all(tables: list[Table], kept: _Kept, *, workers: int, decode: Callable[[str], np.ndarray],
               min_sample_size: int, timeout: float | None, show_progress: bool) -> None:
    """Decode and judge every utterance not in `kept` yet, keeping each verdict as it is made."""
    total = sum(len(t) for t in tables)
    done = sum(int(np.asarray(t.codes["num_samples"])[j].sum()) for t, j in zip(tables, kept.judged))
    bar = progress(total=total, initial=kept.count, desc="checking", unit="file", disable=not show_progress)
    hours = [done / SAMPLE_RATE / 3600]

    def verdict(key: Key, decoded: Decoded) -> None:
        table, row = tables[key[0]], key[1]
        listed = int(table.codes["num_samples"][row])
        kept.add(key, judge(decoded, listed, table.audio(row), min_sample_size, source=table.audio(row)))
        hours[0] += listed / SAMPLE_RATE / 3600
        bar.set_postfix_str(f"{hours[0]:.2f} h", refresh=False)
        bar.update(1)

    todo = total - kept.count
    tasks = (((k, row), table.audio(row)) for k, table in enumerate(tables)
             for row in np.flatnonzero(~kept.judged[k]).tolist())
    try:
        if workers == 0 or not todo:
            for key, path in tasks:
                verdict(key, decode_length(decode, path))
        else:
            with DecoderPool(min(workers, todo), partial(decode_length, decode), failed=_crashed,
                             timeout=timeout) as pool:
                for key, decoded in pool.map(tasks):
                    verdict(key, decoded)
    finally:
        bar.close()


def _check_unchanged(paths: list[Path], tables: list[Table], partial: Path) -> None:
    """XlsrError when a manifest changed while it was checked: its lines may be other utterances now."""
    for path, table in zip(paths, tables):
        try:
            now = fingerprint(path)
        except OSError:
            now = None
        if now != table.meta.get("manifest"):
            raise XlsrError(f"{path}: changed while it was being checked (re-imported?); delete {partial} and "
                            f"check it again")


def _report_records(paths: list[Path], tables: list[Table], bad: dict[Key, Bad]) -> list[dict]:
    """One record per bad utterance, in manifest and line order."""
    records = []
    for (k, row), verdict in sorted(bad.items()):
        table = tables[k]
        records.append({"manifest": str(paths[k]), "line": int(table.codes["line"][row]),
                        "id": table.utterance_id(row), "audio": table.audio(row), "kind": verdict.kind,
                        "message": verdict.message})
    return records


def _summaries(paths: list[Path], tables: list[Table], bad: dict[Key, Bad]) -> list[ManifestSummary]:
    summaries = [ManifestSummary(str(p), files=len(t), samples=int(np.asarray(t.codes["num_samples"]).sum()),
                                 bad_lines=int(t.meta.get("bad", 0)),
                                 bad_lines_listed=str(Path(t.folder or "") / "bad_lines.txt"))
                 for p, t in zip(paths, tables)]
    for (k, _), verdict in bad.items():
        summaries[k].bad[verdict.kind] += 1
    return summaries


def _write_clean(clean_dir: Path, paths: list[Path], tables: list[Table], bad: dict[Key, Bad]) -> None:
    """CLEAN/<lang>/<split>.jsonl for each manifest: its valid lines less the bad utterances' (module docstring)."""
    clean_dir.mkdir(parents=True, exist_ok=True)
    copies = {_clean_copy(clean_dir, p).relative_to(clean_dir).as_posix(): os.path.realpath(p) for p in paths}
    # the mark first: a stop halfway leaves a folder whose copies a rerun may write again
    write_json(clean_dir / CLEAN_MARK, {"written_by": "xlsr data check", "copies": {**_clean_mark(clean_dir), **copies}})
    for k, (path, table) in enumerate(zip(paths, tables)):
        lines = np.asarray(table.codes["line"])
        good = np.ones(len(table), dtype=bool)
        good[[row for m, row in bad if m == k]] = False
        keep = set(lines[good].tolist())
        dest = _clean_copy(clean_dir, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        root, dest_root = path.resolve().parent, dest.parent.resolve()

        def write(tmp: Path, path=path, keep=keep, root=root, dest_root=dest_root) -> None:
            with open(path, "rb") as src, open(tmp, "w", encoding="utf-8") as f:
                for number, raw in enumerate(src, 1):
                    if number in keep:
                        record = parse_json(raw)
                        audio = Path(record["audio"])
                        record["audio"] = audio_field(audio if audio.is_absolute() else root / audio, dest_root)
                        f.write(json_line(record))

        write_file(dest, write)


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) noted during the block and raised again after it, as the handler in place then takes it. A
    handler, not a signal mask: a mask holds the signal back from this thread only, and the kernel hands it to any
    other (a library's thread pool), whose note makes Python raise in the main thread all the same."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)
