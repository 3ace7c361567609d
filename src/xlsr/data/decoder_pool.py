"""Audio decoded in worker processes, so that a decoder that crashes costs its file and not the process asking.

An audio decoder is C code (libsndfile, mpg123): a damaged file that passes every header check can still make it
segfault, which kills whatever process called it. `DecoderPool` runs a given function (`work`: a module-level
callable, sent to the workers by name) on each file in `workers` processes and hands back each file's result; a
worker that dies charges the file it was working on, in one line naming the file and how the worker ended
("decoder crashed (killed by SIGSEGV)"), and a fresh worker takes the rest of what it had been sent. `work`
raising (anything but a stop, such as a MemoryError) is that file's failure too, in one line, and the worker goes
on. `xlsr data check` judges every utterance's length this way (data/check_audio.py); `xlsr transcribe` and
`xlsr evaluate` decode their files this way, ahead of the model (decode/transcribe.py).

Each worker answers the files it is sent in the order sent, one at a time, so the parent always knows which file a
worker is on: the oldest one sent and not answered. A thread per worker reads its answers as they come (a
decoded hour is 230 MB, far more than a pipe holds): a worker never waits for the parent to read, so it decodes
on while the parent is busy (running a model). The parent starts the workers with `spawn`: a worker starts from
nothing, not from a copy of a parent that holds threads and locks, and imports only this module (which does not
import torch: transcription's `work`, `waveform_or_reason`, is here) and `work`'s. Workers ignore SIGINT and SIGTERM (worker_signals.py): Ctrl-C and a scheduler's stop reach
the whole process group, the parent stops, and `close()` (the pool is a context manager) kills its workers; a
worker whose parent is gone finds its pipe closed and exits; one busy on a file then (or hung on it) notices within
a second (PARENT_CHECK_S) and exits too.

A decoder can also hang (a damaged file that sends it round a loop for ever). With `timeout`, a worker that has not
answered a file within that many seconds of starting it is killed, and the file is charged as failed in the same way
("decoder hung (no answer in 300 s; its worker was stopped)"); a worker that does not start within START_TIMEOUT_S
(a hang in its imports: no file's fault) stops the pool in one line.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np

from xlsr import stop_clock
from xlsr.data.audio import audio_num_samples, load_audio
from xlsr.data.worker_signals import close_at_exit, ignore_stop_signals
from xlsr.errors import AudioError, XlsrError

DEPTH = 2  # files `map` sends a worker ahead of its answers: the next one is ready when it finishes one
START_TIMEOUT_S = 120.0  # how long a worker may take to start (spawn, then its imports) before the pool gives up
DEFAULT_TIMEOUT_S = 300.0  # the entry points' default for one file (an hour of 16 kHz MP3 decoded in 1.7 s here)
# the most a timeout may be (11.6 days, the CLIs' bound on seconds): a queue wait longer than 2**31 ms (multiprocessing's)
# or than threading.TIMEOUT_MAX raises OverflowError, and infinity is no deadline
MAX_TIMEOUT_S = 1e6
PARENT_CHECK_S = 1.0  # how often a worker looks whether its parent is still there
_EXIT_GRACE_S = 5.0  # how long a worker whose pipe has ended may take to exit before it is killed
_GONE = object()  # a reader thread's last event: its worker's pipe has ended (the worker died, or was stopped)


def setting_timeout(seconds: float, name: str = "decode_timeout") -> float | None:
    """A decode timeout as a setting gives it (0: no limit) in the form the pool and the loaders take (None: no
    limit); XlsrError naming `name` for a value that is not 0 to MAX_TIMEOUT_S seconds (NaN included)."""
    if not 0 <= seconds <= MAX_TIMEOUT_S:
        raise XlsrError(f"{name}: must be 0 (no limit) or more seconds, at most {MAX_TIMEOUT_S:g}, got {seconds:g}")
    return seconds or None


def checked_timeout(seconds: float | None, name: str) -> float | None:
    """A decode timeout in the form the pool and the loaders take (None: no limit), or XlsrError naming `name` where
    it is not more than 0 and at most MAX_TIMEOUT_S seconds (queue and DataLoader waits overflow above)."""
    if seconds is not None and not 0 < seconds <= MAX_TIMEOUT_S:
        raise XlsrError(f"{name}: must be more than 0 seconds and at most {MAX_TIMEOUT_S:g} (or none), got {seconds:g}")
    return seconds


def crash_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words: 'killed by SIGSEGV', 'exited with status 3'."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def decoder_failed(path, exc: Exception) -> str:
    """The line for a decoder that raised `exc` (not an AudioError) on `path`: its type and first line."""
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"{path}: decoder failed ({type(exc).__name__}: {first})"


def waveform_or_reason(path: str | Path, normalize: bool = False) -> np.ndarray | str:
    """load_audio of `path`, or the one line saying why it has none (its AudioError's message)."""
    try:
        return load_audio(path, normalize=normalize)
    except AudioError as exc:
        return str(exc)


def length_or_reason(path: str | Path) -> int | str:
    """audio_num_samples of `path` (its header's length), or the one line saying why it has none."""
    try:
        return audio_num_samples(path)
    except AudioError as exc:
        return str(exc)


# --- a worker process ---------------------------------------------------------------------------------------------

def _serve(conn: Connection, work: Callable) -> None:
    """A worker's loop: say it is ready, then answer each (key, path) with (key, True, work(path)), or (key, False,
    the line saying what work raised), until told to stop or the parent is gone."""
    ignore_stop_signals(0)  # Ctrl-C reaches the whole process group: the parent stops, and stops us
    # a parent that ends without stopping us (SIGTERM to it alone, SIGKILL) cannot: we stop ourselves, even while
    # `work` is busy on a long file or hung on a damaged one (the pipe's end tells us only between files)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    conn.send(None)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone (killed mid-message: the connection reset, said by no one)
            return
        if task is None:
            return
        key, path = task
        try:
            answer = (key, True, work(path))
        except Exception as exc:  # noqa: BLE001 - this file's failure, in one line; the next file is decoded
            answer = (key, False, decoder_failed(path, exc))
        try:
            conn.send(answer)
        except OSError:  # the parent is gone
            return


def _exit_with_parent(parent: int) -> None:
    """A worker's thread: end the worker once its parent is gone (it has then been handed to another process)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _read_answers(worker: _Worker, events: queue.SimpleQueue) -> None:
    """A reader thread of the parent: each of `worker`'s messages onto `events`, then _GONE when its pipe ends."""
    try:
        while True:
            events.put((worker, worker.conn.recv()))
    except Exception:  # noqa: BLE001 - its end closed (EOF), or an answer cut short by its death
        pass
    finally:  # whatever ended the reading: the parent must not wait on this worker for ever
        events.put((worker, _GONE))


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    sent: deque = field(default_factory=deque)  # (key, path) sent and not answered, oldest first: the one decoding
    ready: bool = False  # it has started (a death before that is no file's fault)
    broken: bool = False  # a send to it failed: it is dying, and gets nothing more
    reader: threading.Thread | None = None
    since: float = field(default_factory=time.monotonic)  # when it started, then when it began its oldest file
    hung_on: tuple | None = None  # the file (its task) it was killed for taking longer than the pool's timeout on


class DecoderPool:
    """`workers` processes running `work` (a module-level function) on files; `failed(line)` makes the result of a
    file whose worker died or hung on it (more than `timeout` seconds; None: waited for) or whose `work` raised,
    from the line saying so."""

    def __init__(self, workers: int, work: Callable, failed: Callable[[str], object],
                 timeout: float | None = None) -> None:
        if workers < 1:
            raise XlsrError(f"workers: must be at least 1, got {workers}")
        checked_timeout(timeout, "decode timeout")
        stop_clock.start()  # time this process spends stopped (Ctrl-Z, a suspended job) is no worker's hang
        self._context = get_context("spawn")
        self.work, self.failed, self.size, self.timeout = work, failed, workers, timeout
        self._workers: list[_Worker] = []
        self._events: queue.SimpleQueue = queue.SimpleQueue()  # (worker, message) from the reader threads
        self._retry: deque = deque()  # sent to a worker that died before answering them (not its crash): sent first
        close_at_exit(self)  # workers ignore SIGTERM: Python's exit must not wait on them (worker_signals.py)

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def map(self, tasks: Iterable[tuple[object, str]]) -> Iterator[tuple[object, object]]:
        """(key, result) for each (key, path) of `tasks`, in the order they finish; each worker is sent DEPTH files
        ahead of its answers."""
        tasks = iter(tasks)
        self._open()
        while True:
            self._send(lambda: next(tasks, None), depth=DEPTH)
            if not self._retry and not any(w.sent for w in self._workers):
                return
            yield from self._next_answers()

    def map_in_order(self, paths: Sequence, sizes: Sequence[int], ahead: int) -> Iterator[object]:
        """The result of each of `paths`, in their order. Files are sent in that order while those sent and not yet
        yielded add up to at most `ahead` by `sizes` (always at least one file): the decoded ones wait here in
        memory, and a long file is decoded alone."""
        answers: dict[int, object] = {}
        sent = taken = held = 0

        def take() -> tuple[int, object] | None:
            nonlocal sent, held
            k = sent
            if k == len(paths) or (k > taken and held + sizes[k] > ahead):
                return None
            sent, held = k + 1, held + sizes[k]
            return k, paths[k]

        self._open()
        while taken < len(paths):
            self._send(take)
            while taken not in answers:
                answers.update(self._next_answers())
                self._send(take)  # what a dead worker had been sent goes to the others at once
            result = answers.pop(taken)
            held, taken = held - sizes[taken], taken + 1
            self._send(take)  # the files after it are decoded while the caller works on this one
            yield result

    def __del__(self) -> None:
        # dropped without close(): its workers, which ignore SIGTERM and wait on pipes its reader threads hold
        # open, would make Python's exit wait on them for ever (multiprocessing joins its daemon children)
        for w in getattr(self, "_workers", []):
            if w.process.is_alive():
                w.process.kill()

    def close(self) -> None:
        """Stop the workers now (one decoding a long file is not waited for: it holds nothing to keep)."""
        for w in self._workers:
            if w.process.is_alive():
                w.process.kill()
        for w in self._workers:
            self._stopped(w)
        self._workers, self._retry = [], deque()
        self._events = queue.SimpleQueue()  # without the stopped readers' last events

    # --- the parent's side ----------------------------------------------------------------------------------------

    def _open(self) -> None:
        for _ in range(self.size - len(self._workers)):
            self._workers.append(self._start())  # one at a time: close() stops those started before a Ctrl-C

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs, self.work), daemon=True)
        process.start()
        theirs.close()  # the worker's end lives in the worker: its death is then our end's EOF
        worker = _Worker(process, ours)
        worker.reader = threading.Thread(target=_read_answers, args=(worker, self._events), daemon=True)
        worker.reader.start()
        return worker

    def _send(self, take: Callable[[], tuple | None], depth: int | None = None) -> None:
        """Send files (the retried first, then `take()`'s until it gives None) to the least busy live worker, each
        holding at most `depth` unanswered (None: no bound)."""
        while True:
            live = [w for w in self._workers if not w.broken]
            if not live:
                return
            w = min(live, key=lambda w: len(w.sent))
            if depth is not None and len(w.sent) >= depth:
                return
            task = self._retry.popleft() if self._retry else take()
            if task is None:
                return
            try:
                w.conn.send(task)
            except OSError:  # dying: its reader's end of pipe replaces it, and the task goes to another
                self._retry.appendleft(task)
                w.broken = True
                continue
            if w.ready and not w.sent:
                w.since = time.monotonic()  # an idle worker starts on it now
            w.sent.append(task)

    def _next_answers(self) -> Iterator[tuple[object, object]]:
        """Wait for a worker's next message: an answer is yielded as (key, result); a worker's end charges the file
        it was on (yielded as failed), puts a fresh worker in its place and the rest of its files up for sending.
        A worker past its time is killed while waiting (its end follows)."""
        while True:
            try:
                w, message = self._events.get(timeout=self._until_overdue())
                break
            except queue.Empty:
                self._stop_overdue()
        if message is None:
            w.ready, w.since = True, time.monotonic()
        elif message is _GONE:
            # its end of the pipe closes as it dies, a moment before it can be waited for: waited for, so that its
            # line says how it ended; one alive still (an answer that would not read, a thread it waits on): killed
            w.process.join(_EXIT_GRACE_S)
            if w.process.is_alive():
                w.process.kill()
            self._stopped(w)
            crashed = self._buried(w)
            self._workers[self._workers.index(w)] = self._start()
            if crashed is not None:
                yield crashed
        else:
            key, ok, result = message
            w.sent.popleft()
            w.since = time.monotonic()  # its next file, if it was sent one, starts now
            yield key, (result if ok else self.failed(result))

    def _until_overdue(self) -> float | None:
        """Seconds until the first worker is overdue (None: none can be): one starting, or one with a file."""
        now = time.monotonic()
        left = [(self.timeout if w.ready else START_TIMEOUT_S) - stop_clock.elapsed_since(w.since, now)
                for w in self._workers if w.hung_on is None and (not w.ready or (w.sent and self.timeout is not None))]
        return max(0.0, min(left)) if left else None

    def _stop_overdue(self) -> None:
        """Kill each worker past its time on its oldest file (its end then charges the file); a worker that has not
        started in START_TIMEOUT_S stops the pool."""
        now = time.monotonic()
        for w in self._workers:
            if w.hung_on is not None:
                continue
            elapsed = stop_clock.elapsed_since(w.since, now)  # time this process spent stopped not counted
            if not w.ready and elapsed >= START_TIMEOUT_S:
                raise XlsrError(f"a decoding worker did not start within {START_TIMEOUT_S:g} s (spawning a Python "
                                f"process and importing numpy and soundfile; is the machine swapping?)")
            if w.ready and w.sent and self.timeout is not None and elapsed >= self.timeout:
                w.hung_on = w.sent[0]
                w.process.kill()
                w.process.join()
                _hang_up(w.conn)  # its reader wakes (a process the decoder started may hold the worker's end)

    def _buried(self, w: _Worker) -> tuple[object, object] | None:
        """A dead worker's file (the oldest it had not answered) as failed; the rest of what it was sent to retry."""
        if not w.ready:
            raise XlsrError(f"a decoding worker could not start (it {crash_reason(w.process.exitcode)}; its error, "
                            f"if it printed one, is above)")
        if not w.sent:
            return None
        if w.hung_on is not None and w.sent[0] is not w.hung_on:  # it answered that file as it was being killed
            self._retry.extendleft(reversed(w.sent))
            w.sent.clear()
            return None
        key, path = w.sent.popleft()
        self._retry.extendleft(reversed(w.sent))
        w.sent.clear()
        if w.hung_on is not None:
            return key, self.failed(f"{path}: decoder hung (no answer in {self.timeout:g} s; its worker was stopped)")
        return key, self.failed(f"{path}: decoder crashed ({crash_reason(w.process.exitcode)})")

    @staticmethod
    def _stopped(w: _Worker) -> None:
        """Wait for a killed or dead worker, then for its reader thread, woken by hanging up its pipe (the worker's
        end may outlive it in a process its decoder started)."""
        w.process.join()
        _hang_up(w.conn)
        if w.reader is not None:
            w.reader.join()
        w.conn.close()


def _hang_up(conn: Connection) -> None:
    """End our side of a worker's pipe, so that a thread reading it wakes with EOF."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as ours:  # a socket pair on Linux and macOS
            ours.shutdown(socket.SHUT_RDWR)
    except OSError:  # closed already, or not a socket
        pass
