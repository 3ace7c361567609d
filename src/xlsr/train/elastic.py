"""When one rank of a multi-process run fails, every rank ends within a second; torchrun restarts only what a
restart can fix.

Two kinds of failure, two outcomes:
- A rank dies (SIGKILL, a lost node, a crash that is no XlsrError): its peers' next collective fails, every
  process exits nonzero, and `torchrun --max-restarts N` starts the group again; it resumes from the newest
  complete checkpoint (train/checkpoint.py: rank 0 alone writes, each checkpoint is staged and renamed, so a
  kill mid-write leaves nothing a restart could pick up), losing at most the updates since that checkpoint.
- An XlsrError on a rank (out of memory with its advice, a data error such as the bad-share cap, too many
  non-finite steps in a row): the same data and batches come back after a restart, and so would the error.
  That rank prints its one `xlsr: error:` line and exits 2; the others end at once with a one-line note. Ranks that
  meet the same error (a setting, a run folder that refuses the resume: every rank checks alike) print it once: the
  first to announce it does, the others exit 2 without a word. An error that differs is printed by its own rank.

How the others learn of it, and why this way: the failing rank sets a key in the process group's store (the
TCPStore that torchrun's agent hosts) before it leaves, and every rank runs a thread that polls that key twice
a second and ends its own process. The training thread does no extra work per step: no collective, no host
sync. Folding a "failed" flag into the step's existing all-reduce cannot work: a rank fails while reading data
or inside forward/backward, when its peers already wait in DDP's gradient all-reduce, which it cannot join
without a backward of its own. A short collective timeout cannot tell a dead peer from a slow step (rank 0
writing a checkpoint, a long validation). A peer blocked inside a gloo/NCCL collective cannot be interrupted
from Python, hence `os._exit`; it writes nothing half (see above).

torchrun restarts the group after any nonzero exit, whatever its code, so an exit status cannot ask it not to.
Instead the failing rank records its error in RUN/fatal_error.json; the ranks of a restarted attempt of the
same torchrun job find it before joining the group and end at once with that line instead of training up to
the same error again (a restart then costs a process start, not a checkpoint interval). The record belongs to
the job that holds the run folder's lock (RUN/.lock, taken by rank 0 in train/trainer.py): only once every rank
knows its rank 0 holds it (`FailureWatch.hold_folder`) does a job record its errors, and a new job remove the
record of an earlier one. A second job started by mistake into a folder that a live job uses is refused the lock
and ends on every rank as above, but writes nothing there: the live job's record is what its own restarts read.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import torch.distributed as dist

from xlsr.atomic import pid_running, write_text
from xlsr.data.decoding_record import forget_decodings
from xlsr.errors import XlsrError
from xlsr.jsonl import parse_json
from xlsr.train.distributed import DistInfo, broadcast_object

FAILED_KEY = "xlsr/failed/"  # + this group's token, in the process group's store; value "rank R failed: <error>"
PROCESS_KEY = "/process/"  # + R, after FAILED_KEY's: "HOST PID" of failing rank R's process
READ_KEY = "/read"  # after FAILED_KEY's: how many ranks know of a failure (their own or a peer's)
SAID_KEY = "/said/"  # + the digest of an error's line, after FAILED_KEY's: the first announcement of that error
FATAL_FILE = "fatal_error.json"  # in the run folder: an XlsrError that ended an attempt of this torchrun job
POLL_SECONDS = 0.5
PEER_FAILED_EXIT = 1  # a rank that ends because another failed (after it, where on its node: see end_for_peer)
PEER_WAIT_SECONDS = 10.0  # the most a rank that ends for a peer waits for that peer's process to be gone
READ_WAIT_SECONDS = 3 * POLL_SECONDS  # the most a failing rank waits for every peer to know of the failure


def torchrun_job() -> tuple[str, int] | None:
    """(job id, attempt) of this process under torchrun (attempt 0, then one more per restart); None outside."""
    if "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return None
    return os.environ.get("TORCHELASTIC_RUN_ID", "none"), int(os.environ["TORCHELASTIC_RESTART_COUNT"])


def restart_note() -> str | None:
    """A warning for a torchrun job whose restarts would fail to form a group again, else None.

    torch 2.13's torchrun keeps one store for all restarts of a job by default, and a restarted group can read
    the previous attempt's gloo/NCCL addresses from it (pytorch/pytorch#135712); the documented opt-out makes
    a store per attempt.
    """
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if not shared or int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) == 0:
        return None
    return ("torchrun --max-restarts needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's environment; "
            "without it a restarted group may fail to connect (docs/distributed.md)")


def stop_if_failed_before(run_dir: Path) -> None:
    """Before joining the group: end a restarted attempt whose job already failed with an XlsrError.

    Rank 0 raises that error again (one line); the other ranks exit quietly with the same status. This only reads:
    the folder may be another job's (this one holds no lock yet), so a record of an earlier job is removed later,
    by `FailureWatch.hold_folder`.
    """
    job = torchrun_job()
    if job is None or job[1] == 0:
        return
    path = run_dir / FATAL_FILE
    rank = int(os.environ.get("RANK", "0"))
    try:
        record = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if record.get("job") != job[0] or int(record.get("attempt", job[1])) >= job[1]:
        return
    if rank != 0:
        raise SystemExit(2)
    raise XlsrError(f"{record['message']} (attempt {record['attempt']} of this torchrun job ended on it; "
                    f"restarting cannot help, so attempt {job[1]} stops too)")


class FailureWatch:
    """This rank's side of the agreement: announce its own failure, end when another rank announces one."""

    def __init__(self, info: DistInfo, run_dir: Path):
        self.info, self.run_dir = info, run_dir
        self._failing = False  # this rank is announcing its own failure: it prints its error itself
        self._failed_process = None  # "HOST PID" of the peer whose failure ends this rank
        self._ending = threading.Lock()  # held by the one thread that ends this process for a peer
        self._holds_folder = False  # the job holds the run folder's lock: RUN/fatal_error.json is its to write
        self._counted = False  # this rank is counted among those that know of a failure (READ_KEY)
        self._stop = threading.Event()
        self._store = _group_store() if info.distributed else None
        # torchrun keeps its store across restarts: a key of its own per group start (not per attempt, which
        # can differ between nodes) keeps a restarted group from reading the failure that ended the last one
        self._key = FAILED_KEY + broadcast_object(uuid.uuid4().hex, info)
        self._thread = None
        if self._store is not None:
            # its own connection, so that polling never waits behind a store call of the training thread
            self._thread = threading.Thread(target=self._watch, args=(self._store.clone(),),
                                            name="xlsr-failure-watch", daemon=True)
            self._thread.start()

    def hold_folder(self) -> None:
        """On every rank, once rank 0 holds the run folder's lock: from here on RUN/fatal_error.json is this job's.

        A collective, so that no rank goes on before the lock is known to be held: where rank 0 was refused it,
        rank 0 has announced its error and left, and the others end here, before they could write into the folder
        of the job that holds it. The first attempt's rank 0 removes an earlier job's record before the collective,
        so never one that a rank of this job wrote; from then on an XlsrError on any rank is recorded for the
        restarted attempts.
        """
        job = torchrun_job()
        if self.info.is_main and job is not None and job[1] == 0:
            (self.run_dir / FATAL_FILE).unlink(missing_ok=True)
        broadcast_object(True, self.info)
        self._holds_folder = True

    def _watch(self, store) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                failed = store.check([self._key])
                message = store.get(self._key).decode() if failed else None
                if message is not None:
                    self._failed_process = _failing_process(store, self._key, message)
            except Exception:  # noqa: BLE001 - the store is gone with its host; the collectives report that
                return
            if message is not None and not self._failing:
                self._count_known(store)
                self.end_for_peer(message)

    def peer_failure(self) -> str | None:
        """What another rank announced, if any (None when no rank did or the store is unreachable)."""
        if self._store is None:
            return None
        try:
            if not self._store.check([self._key]):
                return None
            message = self._store.get(self._key).decode()
            self._failed_process = _failing_process(self._store, self._key, message)
            return message
        except Exception:  # noqa: BLE001 - as in _watch
            return None

    def end_for_peer(self, message: str) -> None:
        """End this process, with one note: another rank failed (the message says which and why).

        It ends once the failing rank's process is gone, where that runs on this node: torchrun reports as the job's
        root cause the first process it finds ended (and, ended within the same look, the lowest rank), so a peer
        that ended first (within half a second of the announcement, while the failing rank still prints and
        unwinds) was named instead, with its exit status 1, and the failing rank shown as stopped by torchrun.
        """
        if not self._ending.acquire(blocking=False):  # the watch thread, and the training thread whose collective
            self._ending.acquire()  # broke as the peer left: the first ends the process, the other waits for that
        print(f"xlsr: rank {self.info.rank} stops: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        forget_decodings()  # the file the training thread may be decoding did not end this process
        _wait_until_gone(self._failed_process, PEER_WAIT_SECONDS)
        os._exit(PEER_FAILED_EXIT)

    def announce(self, exc: BaseException) -> str | None:
        """Tell the other ranks that this one failed; record an XlsrError for restarted attempts of the job (only
        where the job holds the run folder: a job refused its lock leaves the folder as it found it).

        Returns the first announcement of this same error: this rank's, or that of a rank which announced it before
        (taken in one step of the store, so that of ranks failing with it together exactly one is first, whatever
        other errors other ranks announced between them); None where the store is unreachable. The first
        announcement of an error replaces another error's for the peers that read it later.
        """
        self._failing = True
        line = _first_line(exc)
        ours, first = f"rank {self.info.rank} failed: {line}", None
        if self._store is not None:
            try:  # the process first: a peer that reads the failure finds it
                self._store.set(f"{self._key}{PROCESS_KEY}{self.info.rank}", f"{socket.gethostname()} {os.getpid()}")
                said = f"{self._key}{SAID_KEY}{hashlib.sha256(line.encode()).hexdigest()}"
                first = self._store.compare_set(said, "", ours).decode()
                if first == ours:
                    self._store.set(self._key, ours)
                self._count_known(self._store)
            except Exception:  # noqa: BLE001 - the store is gone: the peers' collectives fail by themselves
                pass
        job = torchrun_job()
        if isinstance(exc, XlsrError) and job is not None and self._holds_folder:
            _write_record(self.run_dir / FATAL_FILE, {"job": job[0], "attempt": job[1], "rank": self.info.rank,
                                                      "message": line})
        return first

    def end_quietly(self, first: str) -> NoReturn:
        """End this process without a word, status 2: a peer announced the same error first (`first`) and prints it.

        As in `end_for_peer`, only once that peer's process is gone where it runs on this node: ended first, this
        one would be named by torchrun as the root cause, and torchrun's SIGTERM could cut the peer's line short."""
        if not self._ending.acquire(blocking=False):  # the watch thread is ending this process for that peer
            self._ending.acquire()
        self.close()  # the watch polls no more: the store may go with that peer's process (torch logs its frames)
        self._failed_process = _failing_process(self._store, self._key, first)
        _wait_until_gone(self._failed_process, PEER_WAIT_SECONDS)
        raise SystemExit(2)

    def wait_until_known(self) -> None:
        """Return once every rank knows of a failure (its own, or a peer's read by its watch), or after
        READ_WAIT_SECONDS.

        A failing rank waits so before it leaves: the store may live in its process (rank 0 hosts it where torchrun's
        agent does not), and it would go with it before the peers' watches (every POLL_SECONDS) had read the failure;
        a peer that fails with the same error a moment later would then print it again, finding no store to tell it
        that another rank already says it."""
        deadline = time.monotonic() + READ_WAIT_SECONDS
        while self._store is not None and time.monotonic() < deadline:
            try:
                if self._store.add(self._key + READ_KEY, 0) >= self.info.world_size:
                    return
            except Exception:  # noqa: BLE001 - the store is gone with its host: nobody can read it any more
                return
            time.sleep(0.05)

    def _count_known(self, store) -> None:
        """Count this rank, once, among those that know of a failure."""
        if not self._counted:
            self._counted = True
            try:
                store.add(self._key + READ_KEY, 1)
            except Exception:  # noqa: BLE001 - the store is gone with its host: nobody waits on the count
                pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * POLL_SECONDS)


@contextmanager
def one_failure_ends_all(info: DistInfo, run_dir: Path) -> Iterator[FailureWatch]:
    """Around a run's setup and loop: an exception here ends every rank (see the module docstring). Errors are
    recorded in the run folder only after the caller's `hold_folder()` on what this yields."""
    watch = FailureWatch(info, run_dir)
    try:
        yield watch
    except Exception as exc:
        peer = watch.peer_failure()
        if peer is not None and not isinstance(exc, XlsrError) and not _same_error(peer, exc):
            watch._count_known(watch._store)
            watch.end_for_peer(peer)  # our collective broke because that rank left first
        first = watch.announce(exc)
        if first is not None and first != f"rank {info.rank} failed: {_first_line(exc)}" and _same_error(first, exc):
            watch.end_quietly(first)  # every rank met the same error (a setting, the run folder): said once
        watch.wait_until_known()
        raise
    finally:
        watch.close()


def _group_store():
    """The default process group's store (torchrun's agent store), or None where torch does not expose it."""
    get = getattr(dist.distributed_c10d, "_get_default_store", None)  # private, but stable since torch 1.x
    try:
        return get() if get is not None and dist.is_initialized() else None
    except (RuntimeError, ValueError):
        return None


def _read(store, key: str) -> str | None:
    """The value of `key` in `store`, None where it has none."""
    return store.get(key).decode() if store.check([key]) else None


def _first_line(exc: BaseException) -> str:
    """What an announcement says of `exc`: its message's first line (its type's name where it has none), a byte of a
    file name that is not UTF-8 written as `\\udcXX`, as stderr writes it (the store takes UTF-8 text only)."""
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def _same_error(announced: str, exc: BaseException) -> bool:
    """Whether an announcement ("rank R failed: LINE") tells of the same error as `exc`."""
    return announced.partition(" failed: ")[2] == _first_line(exc)


def _failing_process(store, key: str, announced: str) -> str | None:
    """The process ("HOST PID") of the rank that announced `announced` under `key`; None where it is not known."""
    rank = announced.removeprefix("rank ").partition(" ")[0]
    try:
        return _read(store, f"{key}{PROCESS_KEY}{rank}") if rank.isdigit() and store is not None else None
    except Exception:  # noqa: BLE001 - the store is gone with its host
        return None


def _wait_until_gone(process: str | None, limit_s: float, uncollected_s: float = 1.0) -> None:
    """Return once the process "HOST PID" has ended and its parent (torchrun's agent, which looks every 0.1 s) has
    collected its exit status, or has left it uncollected for `uncollected_s` (a launcher that collects only when it
    joins its ranks: waiting on would cost `limit_s` for nothing), or after `limit_s`; at once for a process of
    another host (or none named)."""
    host, _, pid = (process or "").partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return
    deadline = time.monotonic() + limit_s
    ended_at = None
    while time.monotonic() < deadline:
        if not pid_running(int(pid)):  # (true until the parent collected it: an exited, uncollected one too)
            return
        if _uncollected(int(pid)):
            ended_at = ended_at or time.monotonic()
            if time.monotonic() - ended_at > uncollected_s:
                return
        time.sleep(0.05)


def _uncollected(pid: int) -> bool:
    """Whether process `pid` has ended and waits for its parent to collect it (a zombie; Linux's /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _write_record(path: Path, record: dict) -> None:
    """Write `record` atomically; several failing ranks may write at once, each under its own temporary name (and a
    rank killed while writing leaves one that the next record's write removes: atomic.write_file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record) + "\n")
