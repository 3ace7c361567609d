"""Which file the training process is decoding, kept in the run folder where a crash cannot erase it.

A data worker that a decoder kills costs its file and nothing more (worker_crash.py). Without workers the decoder
runs in the training process itself: with `num_workers` 0 (fine-tuning's default, for its training and dev data)
and always for pretraining's validation. A segfault there ends the run, says no file's name, and the same command
dies again at the same file.

`DecodingRecord` keeps the audio path being decoded (for a shard folder's stream, the utterance's SHARD_PATH:MEMBER
key) in a small memory-mapped file of the run folder
(RUN/decoding/now-rank<R>: one store per decoding, no system call). The mapping is the file's page cache, which
outlives the process however it ends; a decoding that finishes, or raises, clears it. So when a run starts in a
folder whose record still names a file, the process before it ended while decoding that file: the file goes to
RUN/decoding/crashed.jsonl, is skipped (a bad file, counted against max_bad_share, in the same words each epoch)
by this run and every later one in the folder, and a warning names it.

A decoder can also hang in the training process (a damaged file that sends it round a loop), where no worker can be
stopped: the run would wait for ever. With `timeout` (the runs' `decode_timeout`), a watchdog thread looks at the
decoding under way once a second; past `timeout` seconds on one file (time the process spent stopped, by Ctrl-Z or
a scheduler's suspend, not counted), with the decoding thread computing for at least CPU_SHARE of them (a decoder
sent round a loop computes; a read stalled on network storage does not, and is waited for), it puts the file in
RUN/decoding/crashed.jsonl (`"hung"`: the timeout), says so in one line naming it, and ends the process (exit status HUNG_EXIT; os._exit, the only way out of a decoder stuck
in C code): the same command skips the file and goes on from the last checkpoint. It does so only while that
decoding is still under way (the main thread, finishing it, waits for the watchdog's verdict), so the process never
ends in what the main thread does next (a checkpoint's save). A decoding paused in a debugger (pdb, an IDE's) is
not taken for a hang. The thread runs while the decoder holds no lock Python needs (cffi's soundfile calls release
it).

The blame may be wrong where a process ended from outside while it was decoding: SIGKILL, the out-of-memory killer,
the machine going down (the record as last written back), or a rank that ends itself because a peer failed, unless it
calls `forget_decodings()` first (train/elastic.py does). That costs one file, named in the warning; deleting its line
from crashed.jsonl gives it back.

Under DDP each rank keeps its own record and moves its own file into the one crashed list; the other ranks learn of
it when their loaders start their next pass (`refresh`), so a file that crashed one rank is decoded by another at
most in the epoch the run resumed in. The records of ranks a resume no longer has (fewer ranks than before) are read
by every rank and moved by rank 0. Nothing is written to the folder until the first decoding (a
run refused before it leaves the folder as it was). Where the record cannot be kept (a full disk, a file system that
cannot map files), a warning says so and decoding goes on unrecorded.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from xlsr import stop_clock
from xlsr.atomic import json_line
from xlsr.jsonl import json_object

log = logging.getLogger(__name__)

FOLDER = "decoding"
CRASHED = "crashed.jsonl"
# bytes of the record: 8 for the path's length, then the path; any path the system can open fits (PATH_MAX: 4096
# bytes on Linux), a longer one is cut (it fails to open: no decoder runs on it)
SIZE = 8192
_records: weakref.WeakSet[DecodingRecord] = weakref.WeakSet()  # every record of this process, for forget_decodings()
# held while a decoding is written into its record and by forget_decodings(): no decoding is recorded after it
_forgetting = threading.Lock()


NOW = "now-rank"  # + the rank: each process's record
HUNG_EXIT = 3  # the exit status of a process the watchdog ends (a decoder hung in it)
WATCH_PERIOD_S = 1.0  # how often the watchdog looks (at most; less for a short timeout)
CPU_SHARE = 0.25  # a decoding past its timeout is taken for hung once its thread has computed this share of it


def _now_name(rank: int) -> str:
    return f"{NOW}{rank}"


def _rank_of(record: Path) -> int | None:
    rank = record.name[len(NOW):]
    return int(rank) if rank.isdigit() else None


def forget_decodings() -> None:
    """Clear the record of every DecodingRecord of this process: for a process about to end itself from another thread
    (os._exit, which runs no `finally`), so that the file its main thread may be decoding is not blamed. A decoding
    the main thread begins after this call (before the process ends) is not recorded either."""
    with _forgetting:
        for record in list(_records):
            record._forgotten = True
            if record._map is not None:
                record._map[:8] = bytes(8)


class DecodingRecord:
    """The record of one process (`rank`) training in `run_dir`; `crashed` holds the audio paths to skip."""

    def __init__(self, run_dir: str | Path, rank: int = 0, world_size: int = 1, timeout: float | None = None) -> None:
        self.folder = Path(run_dir) / FOLDER
        self.rank = rank
        self.timeout = timeout  # seconds one decoding may take before the watchdog ends the process (None: no limit)
        # the decoding under way: its audio, when it began (time.monotonic()), the thread decoding it and that
        # thread's CPU time then (time.thread_time())
        self._now: tuple[str, float, int, float] | None = None
        self._watchdog: threading.Thread | None = None
        self._map: mmap.mmap | None = None
        self._unrecorded = False  # the record could not be kept (_open failed): decodings go on without it
        self._forgotten = False  # forget_decodings() was called: this process is ending, nothing more is recorded
        with _forgetting:
            _records.add(self)
        self.crashed: dict[str, str] = {}  # audio path -> the line a loader charges it with
        self.refresh()
        # what the process before us was decoding, and those of ranks this run does not have (nobody writes them)
        self.died_on = _recorded(self.folder / _now_name(rank))
        self._orphans = {path: _recorded(path) for path in self._orphan_records(world_size)}
        for audio in [self.died_on, *self._orphans.values()]:
            if audio is not None and audio not in self.crashed:
                self.crashed[audio] = self._message(audio)
                # the blame is a guess: a kill from outside while it decoded looks the same, and the user knows
                log.warning("%s; if that process was ended from outside (killed, out of memory, the machine went "
                            "down), the file is not at fault: delete its line there to give it back",
                            self.crashed[audio])

    def _orphan_records(self, world_size: int) -> list[Path]:
        """The records of ranks `world_size` and above, left by a run with more ranks."""
        return sorted(p for p in self.folder.glob(f"{NOW}*") if (_rank_of(p) or 0) >= world_size)

    def refresh(self) -> None:
        """Read the crashed list again: files other ranks have added since (a loader calls this at each pass)."""
        self._read_crashed(self.folder / CRASHED)

    def __getstate__(self) -> dict:
        # a DataLoader worker started by spawn or forkserver gets a copy: the mapping stays with this process (a
        # worker decodes under its reading slot, never under this record)
        return {**self.__dict__, "_map": None, "_watchdog": None, "_now": None}

    def _message(self, audio: str, hung: float | None = None) -> str:
        why = "a decoder crash, most likely" if hung is None else f"its decoder hung: more than {hung:g} s on it"
        return (f"{audio}: an earlier run in the run folder {self.folder.parent} ended while decoding it in the "
                f"training process ({why}); skipped in this run and later ones ({self.folder / CRASHED} lists it)")

    def _read_crashed(self, path: Path) -> None:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            record = json_object(line)  # a line torn by a kill, or not ours: {}
            audio, hung = record.get("audio"), record.get("hung")
            if isinstance(audio, str):
                self.crashed[audio] = self._message(audio, hung if isinstance(hung, int | float) else None)

    def _open(self) -> mmap.mmap:
        """At the first decoding: the earlier process's file into crashed.jsonl, then a cleared record mapped."""
        self.folder.mkdir(parents=True, exist_ok=True)
        moved = [(self.rank, self.died_on)] if self.died_on is not None else []
        if self.rank == 0:  # the orphans are rank 0's to move
            moved += [(_rank_of(path), audio) for path, audio in self._orphans.items() if audio is not None]
        if moved:
            with open(self.folder / CRASHED, "ab") as f:
                f.write(b"".join(json_line({"audio": audio, "rank": rank}).encode("utf-8") for rank, audio in moved))
                f.flush()
                os.fsync(f.fileno())
        self.died_on = None
        if self.rank == 0:
            for path in self._orphans:
                path.unlink(missing_ok=True)
            self._orphans = {}
        fd = os.open(self.folder / _now_name(self.rank), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # written, not extended with ftruncate: a file of holes on a full disk maps, and the first store into
            # it is a SIGBUS; written, the disk's refusal is an OSError here
            zeros = memoryview(bytes(SIZE))
            while zeros:
                zeros = zeros[os.write(fd, zeros):]
            return mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)  # the mapping keeps the file

    @contextlib.contextmanager
    def decoding(self, audio: str) -> Iterator[None]:
        """Around decoding `audio` in this process: recorded while it lasts."""
        if self._map is None and not self._unrecorded:
            try:
                self._map = self._open()
            except (OSError, ValueError) as exc:  # ValueError: mmap's own refusals
                self._unrecorded = True
                log.warning("%s: cannot keep the record of what this process decodes (%s); decoding goes on, but a "
                            "decoder crash in this process will not be named to the next run",
                            self.folder / _now_name(self.rank), exc)
        if self.timeout is not None and self._watchdog is None:  # before the name is kept: a thread that cannot
            stop_clock.start()  # start (a process at its thread limit) fails this decoding, blaming no file
            watchdog = threading.Thread(target=_watch, args=(weakref.ref(self),), daemon=True,
                                        name="xlsr-decode-watchdog")
            watchdog.start()
            self._watchdog = watchdog
        recorded = False
        try:
            # under the lock: forget_decodings() (another thread, os._exit next) either clears this name or comes
            # first; and the watchdog ends the process only while a decoding it found too long is still under way
            with _forgetting:
                recorded = self._map is not None and not self._forgotten
                if recorded:
                    name = os.fsencode(audio)[: SIZE - 8]
                    self._map[8:8 + len(name)] = name
                    self._map[:8] = len(name).to_bytes(8, "little")
                self._now = (audio, time.monotonic(), threading.get_ident(), time.thread_time())
            yield
        finally:
            with _forgetting:
                self._now = None
                if recorded:
                    self._map[:8] = bytes(8)

    def _stop_hung(self, now: tuple[str, float, int, float]) -> None:
        """The watchdog's end of a process whose decoder has been on one file (the decoding `now`) longer than the
        timeout; nothing when that decoding has ended meanwhile (the process then goes on)."""
        audio, crashed = now[0], self.folder / CRASHED
        # held to the end: no decoding is recorded after this (the file is named below, not blamed by the next run),
        # and the main thread, finishing this decoding, waits here: the process never ends in what it does next
        with _forgetting:
            if self._now is not now:  # it ended since the watchdog looked: the main thread may be past it
                return
            self._forgotten = True
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                with open(crashed, "ab") as f:
                    f.write(json_line({"audio": audio, "rank": self.rank, "hung": self.timeout}).encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())
                then = f"the same command skips it ({crashed} lists it)"
                if self._map is not None:
                    self._map[:8] = bytes(8)
            except OSError as exc:  # the record stays as it is: the next run blames the file all the same
                then = (f"{crashed} could not be written ({exc.strerror}): the same command skips it only where this "
                        f"process's record of it was kept")
            log.error("%s: the audio decoder has been on it for more than %g s in the training process (hung, most "
                      "likely; with data workers it would have been stopped and the file skipped); the run stops "
                      "here and %s", audio, self.timeout, then)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(HUNG_EXIT)

    def close(self) -> None:
        self._now = None
        if self._map is not None:
            self._map.close()
            self._map = None


def _watch(ref: weakref.ref[DecodingRecord]) -> None:
    """The watchdog thread of one record: ends the process when a decoding has lasted more than its timeout (time
    the process spent stopped, by Ctrl-Z or a scheduler's suspend, not counted: stop_clock.py)."""
    excused = None  # a decoding found paused in a debugger: a person is looking at it, it is not hung
    while (record := ref()) is not None:
        now, period = record._now, min(WATCH_PERIOD_S, record.timeout / 4)
        if (now is not None and now is not excused and stop_clock.elapsed_since(now[1]) > record.timeout
                and _computing(now, record.timeout) and record._now is now):
            if _in_debugger(now[2]):
                excused = now
            else:
                record._stop_hung(now)  # still that decoding (checked again there, under the lock)
        del record, now  # not held while sleeping: a record dropped ends its thread
        time.sleep(period)


def _computing(now: tuple[str, float, int, float], timeout: float) -> bool:
    """Whether the thread of the decoding `now` has spent at least CPU_SHARE of `timeout` of CPU time on it: a decoder
    sent round a loop computes; one waiting on its storage (an NFS or Lustre stall) does not, and is waited for, as
    is a thread stopped at a debugger's prompt. True where a thread's CPU time cannot be read (not Linux)."""
    if now[2] not in {t.ident for t in threading.enumerate()}:  # ended (no clock to read): not hung
        return False
    try:
        spent = time.clock_gettime(time.pthread_getcpuclockid(now[2])) - now[3]
    except (AttributeError, OSError):
        return True
    return spent >= CPU_SHARE * timeout


def _in_debugger(thread: int) -> bool:
    """Whether thread `thread` is stopped in a debugger (pdb and those built on bdb, debugpy/pydevd): its stack holds
    the debugger's frames above its own."""
    frame = sys._current_frames().get(thread)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module in ("bdb", "pdb") or module.split(".")[0] in ("pydevd", "_pydevd_bundle", "_pydevd_frame_eval"):
            return True
        frame = frame.f_back
    return False


def _recorded(path: Path) -> str | None:
    """The audio path a record file names, or None (cleared, missing, or not a record)."""
    try:
        with open(path, "rb") as f:
            data = f.read(SIZE)
    except OSError:
        return None
    if len(data) < 8:
        return None
    n = int.from_bytes(data[:8], "little")
    if not 0 < n <= len(data) - 8:
        return None
    return os.fsdecode(data[8:8 + n])
