"""A data worker that dies while decoding a file names the file.

An audio decoder is C code (libsndfile, mpg123, libvorbis, libopus): a damaged file that passes every check
`data/audio.py` can make before decoding may still crash it, and the crash kills the DataLoader worker that was
reading it. PyTorch then raises "DataLoader worker ... is killed by signal" in the trainer, from a SIGCHLD
handler, wherever the trainer happens to be (mid-update), and the run ends; a resume reads the same file and
ends the same way.

Two pieces let the loader (`batching.BatchLoader`) go on instead:

- `ReadingSlots`: one slot per worker in shared memory, holding the utterance its worker is decoding (-1 while it
  decodes nothing). The parent reads the slot of a dead worker: the file that killed it.
- `defer_worker_deaths`: PyTorch's SIGCHLD handler raises its error only while the loader waits for a batch of
  the DataLoader whose worker died (inside `waiting_for_batch(that loader)`), where the loader can catch it, and
  only where the main thread sleeps in DataLoader's poll of its data queue (`_in_data_wait`). An error raised by a
  signal handler lands between any two steps of the code it interrupts: raised just after a queue's `put` took its
  lock, it leaves that lock held and the next `put` (PyTorch's own, as it stops the workers) waits forever. Anywhere
  else the error is held: inside the wait for a batch but outside its poll, SIGCHLD is sent to the main thread again a
  moment later (`_say_again_soon`), by when it is most likely back in the poll, and the error raised there (PyTorch
  reports each death once); elsewhere (mid-update, or while another loader waits: validation's, as the training
  loader's workers decode ahead) it is dropped, and the loader finds the dead worker itself before it asks again
  (`dead_workers`).

Only a death by a crash signal blames the file. SIGKILL is what the kernel's out-of-memory killer sends, and a
worker that dies outside decoding, or exits, has no file to blame: the loader stops with a line saying so.

A decoder can also hang on a damaged file. Each slot also holds when its worker started the file (`since`); a loader
given a decode timeout waits for a batch at most that long at a time (DataLoader's `timeout`) and then asks
`overdue` which worker has been on one file longer: the loader kills it and charges the file as it charges a crash.

The shard loader (data/shard_loader.py) does the same with `KeyReadingSlots`, whose slots hold an utterance's key
(its shard and member) instead of a position in a manifest; `crash_line`, `hang_line` and `kill_workers` serve both.
Its one-pass streams end: a worker that has read its share marks its slot (`finish`) before DataLoader lets it exit,
and `dead_workers` given the slots counts that exit as no death.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info
from torch.utils.data import dataloader as _dataloader

from xlsr import stop_clock
from xlsr.data.decoder_pool import crash_reason
from xlsr.errors import XlsrError

# signals a decoder's own fault raises (a bad read, a bad instruction, an abort() on a failed assertion)
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT)

_waiting = None  # the DataLoader the main thread waits on, inside waiting_for_batch()
_installed = False  # our wrapper around PyTorch's SIGCHLD handler is in place
_unsaid: RuntimeError | None = None  # PyTorch's error for a death that came outside the poll, to raise in it


class ReadingSlots:
    """What each worker is decoding, in memory shared with its parent: slot k is worker k's utterance index."""

    FINISHED = -2  # a slot's value once its worker has read its whole share (an IterableDataset's pass): see `finish`

    def __init__(self, num_workers: int) -> None:
        self.slots = torch.full((num_workers,), -1, dtype=torch.int64).share_memory_()
        # time.monotonic() when each worker began its file: one clock for every process of the machine
        self.since = torch.zeros(num_workers, dtype=torch.float64).share_memory_()
        self._arrays: dict | None = None  # numpy views of the same memory, made in the process that writes (`_np`)
        stop_clock.start()  # the parent (which makes the slots) judges `overdue` by time it was not stopped

    def __getstate__(self) -> dict:
        # a worker started by spawn or forkserver gets the shared tensors and makes its own views of them
        return {**self.__dict__, "_arrays": None}

    def _np(self, name: str):
        """The numpy view of shared tensor `name`: a worker's store through it costs ~0.2 µs, through torch ~2 µs,
        paid around every decoding."""
        if self._arrays is None:
            self._arrays = {}
        if name not in self._arrays:
            self._arrays[name] = getattr(self, name).numpy()
        return self._arrays[name]

    @contextlib.contextmanager
    def reading(self, index: int) -> Iterator[None]:
        """Around a worker's decoding of utterance `index` (nothing in the parent process, which has no slot)."""
        worker = get_worker_info()
        if worker is None:
            yield
            return
        slots = self._np("slots")
        self._np("since")[worker.id] = time.monotonic()
        slots[worker.id] = index
        try:
            yield
        finally:
            slots[worker.id] = -1

    def finish(self) -> None:
        """In a worker whose dataset iterator has ended (its share of a one-pass read): DataLoader then lets the
        process exit, with status 0, while the others go on; this mark tells that end from a death (`dead_workers`)."""
        worker = get_worker_info()
        if worker is not None:
            self._np("slots")[worker.id] = self.FINISHED

    def finished(self, worker_id: int) -> bool:
        """Whether worker `worker_id` said it has read its whole share (`finish`)."""
        return int(self.slots[worker_id]) == self.FINISHED

    def held_by(self, worker_id: int) -> int | None:
        """The utterance worker `worker_id` was decoding, or None."""
        index = int(self.slots[worker_id])
        return None if index < 0 else index

    def overdue(self, seconds: float) -> list[tuple[int, int, float]]:
        """(worker id, utterance, seconds on it) of each worker decoding one utterance for more than `seconds` (time
        this process spent stopped, by Ctrl-Z or a scheduler's suspend of the job, not counted: stop_clock.py)."""
        now = time.monotonic()
        found = []
        for worker, index in enumerate(self.slots.tolist()):
            elapsed = stop_clock.elapsed_since(float(self.since[worker]), now)
            if index >= 0 and elapsed > seconds:
                found.append((worker, index, elapsed))
        return found

    def clear(self) -> None:
        self.slots.fill_(-1)


class KeyReadingSlots(ReadingSlots):
    """ReadingSlots whose slots name an utterance by a string key (a shard's path and member) instead of an index:
    the key's bytes in shared memory, the slot its length."""

    SIZE = 8192  # bytes of a key: a shard path up to PATH_MAX (4096 on Linux) and its member; a longer one is cut

    def __init__(self, num_workers: int) -> None:
        super().__init__(num_workers)
        self.keys = torch.zeros((num_workers, self.SIZE), dtype=torch.uint8).share_memory_()

    @contextlib.contextmanager
    def reading(self, key: str) -> Iterator[None]:
        worker = get_worker_info()
        raw = os.fsencode(key)[: self.SIZE]
        if worker is not None:  # the key first: the slot names it only once it is whole
            self._np("keys")[worker.id, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        with super().reading(len(raw)):
            yield

    def _key(self, worker: int, length: int) -> str:
        return os.fsdecode(self.keys[worker, :length].numpy().tobytes())

    def held_by(self, worker_id: int) -> str | None:  # type: ignore[override]
        """The key of the utterance worker `worker_id` was decoding, or None."""
        length = super().held_by(worker_id)
        return None if length is None else self._key(worker_id, length)

    def overdue(self, seconds: float) -> list[tuple[int, str, float]]:  # type: ignore[override]
        """(worker id, key, seconds on it) of each worker decoding one utterance for more than `seconds`."""
        return [(worker, self._key(worker, length), elapsed) for worker, length, elapsed in super().overdue(seconds)]


def kill_workers(iterator) -> None:
    """Kill and wait for the worker processes of a DataLoader iterator still alive (they ignore SIGTERM:
    worker_signals.py); their deaths are no crash to report (`defer_worker_deaths` drops them)."""
    for w in getattr(iterator, "_workers", None) or []:
        if w.is_alive():
            w.kill()
        w.join()


def crash_line(code: int, name: str | None, rank: int) -> str:
    """The bad-file line for a worker that died (exit code `code`) while decoding `name` (None: outside decoding); an
    XlsrError saying so for a death no decoder crash explains (SIGKILL, an exit, a crash outside decoding)."""
    if name is None or not is_crash(code):
        where = f"while decoding {name}" if name else "outside audio decoding"
        why = (" (the kernel's out-of-memory killer sends SIGKILL: fewer --num-workers or a smaller --max-tokens use "
               "less memory)" if code == -signal.SIGKILL else "")
        raise XlsrError(f"a data loading worker of rank {rank} ended ({crash_reason(code)}) {where}{why}")
    return f"{name}: the audio decoder crashed on it (its data worker was {crash_reason(code)}); skipped for the rest " \
           f"of this run"


def hang_line(name: str, seconds: float, decode_timeout: float) -> str:
    """The bad-file line for a worker stopped after `seconds` on `name`, more than `decode_timeout`."""
    return (f"{name}: the audio decoder hung on it (no answer in {seconds:.0f} s, more than decode_timeout="
            f"{decode_timeout:g}; its data worker was stopped); skipped for the rest of this run")


def dead_workers(iterator, wait: float = 0.0, slots: ReadingSlots | None = None) -> list[tuple[int, int]]:
    """(worker id, exit code) of each worker of a DataLoader iterator that has ended (a negative code: killed by that
    signal), but one that exited normally after saying in `slots` that it had read its whole share; with `wait`, up
    to that many seconds for one to end (a dying process closes its pipes, which the parent may see, a moment before
    it can be waited for). An iterator without worker processes has none."""
    workers = getattr(iterator, "_workers", None) or []  # DataLoader's worker processes, in worker-id order
    deadline = time.monotonic() + wait
    while True:
        ended = [(k, w.exitcode) for k, w in enumerate(workers)]
        dead = [(k, code) for k, code in ended
                if code is not None and not (code == 0 and slots is not None and slots.finished(k))]
        if dead or not workers or time.monotonic() >= deadline:
            return dead
        time.sleep(0.01)


def worker_deaths(iterator, reading: ReadingSlots | None, stop_workers: Callable[[], None]) -> list[tuple[int, object]]:
    """(exit code, what its slot held) of each worker of a DataLoader iterator that died, once `stop_workers` (the
    loader's, leaving the slots as they are) has stopped the others: those found dead first, and any other a decoder
    crash ended meanwhile (at a moment of the first: its slot still names its file). The slots are cleared after."""
    first = dict(dead_workers(iterator, slots=reading))  # the deaths found: any one that is no crash stops the run
    workers = list(getattr(iterator, "_workers", None) or [])
    stop_workers()
    codes = {k: first.get(k, w.exitcode) for k, w in enumerate(workers)}
    deaths = [(code, reading.held_by(k) if reading is not None else None) for k, code in codes.items()
              if k in first or (code is not None and is_crash(code))]
    if reading is not None:
        reading.clear()
    return deaths


def is_timeout(exc: BaseException) -> bool:
    """Whether `exc` is DataLoader's "timed out" error (its `timeout` passed without a batch)."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("DataLoader timed out after")


def is_crash(exit_code: int) -> bool:
    """A death the decoder itself causes (not the OOM killer's SIGKILL, not a stop signal, not an exit)."""
    return exit_code < 0 and -exit_code in {int(s) for s in CRASH_SIGNALS}


@contextlib.contextmanager
def waiting_for_batch(loader) -> Iterator[None]:
    """Around the loader's `next()` on DataLoader `loader` (or on a DataLoader iterator), and its start of a pass: the
    death of one of `loader`'s workers raises here, and only here."""
    global _waiting
    _waiting = loader
    try:
        yield
    finally:
        _waiting = None


def defer_worker_deaths() -> None:
    """Wrap the SIGCHLD handler PyTorch installs with its first worker process (call after creating a DataLoader
    iterator): its error is raised only inside `waiting_for_batch()` on the loader whose worker died. Once per
    process; the main thread only (the only one that may set handlers, and the one PyTorch's handler runs in)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGCHLD)
    if not callable(handler):
        return  # PyTorch set none (no workers yet): nothing to defer

    def deferred(signum, frame):
        global _unsaid
        try:
            handler(signum, frame)  # PyTorch's: its error once per death of a worker of any DataLoader
        except RuntimeError as exc:
            _unsaid = exc
        if _unsaid is None:
            return
        iterator = _waiting._iterator if isinstance(_waiting, DataLoader) else _waiting
        if iterator is not None and not _in_data_wait(frame):
            # in the wait for a batch but not in its poll (between two steps of it): said again in a moment, when
            # the main thread is most likely back in the poll
            _say_again_soon()
            return
        error, _unsaid = _unsaid, None
        if iterator is not None and dead_workers(iterator):
            raise error  # a worker of the loader asking for a batch: it catches this
        # dropped elsewhere (mid-update, a worker of another loader than the one waiting): a BatchLoader finds its
        # dead worker before it next asks (dead_workers), a DataLoader waiting for a batch at its status check
        # (every 5 s, or once its timeout, decode_timeout, passes)

    signal.signal(signal.SIGCHLD, deferred)
    _installed = True


_again = threading.Lock()  # held while a repeated SIGCHLD is pending (`_say_again_soon`)


def _say_again_soon(delay: float = 0.05) -> None:
    """Send the main thread SIGCHLD again after `delay` seconds, from a timer thread (one pending at a time): to that
    thread, so that it interrupts the poll the thread sleeps in (sent to the process, the timer's own thread may
    take it, and the poll sleeps on)."""
    if not _again.acquire(blocking=False):
        return
    main = threading.main_thread().ident

    def send() -> None:
        _again.release()
        signal.pthread_kill(main, signal.SIGCHLD)

    timer = threading.Timer(delay, send)
    timer.daemon = True
    timer.start()


def _in_data_wait(frame) -> bool:
    """Whether `frame`, where a signal stopped the main thread, is the select() of DataLoader's wait for its data
    queue (`_try_get_data`): an error raised there leaves the queue as it was (its get releases its lock on the way
    out, and no message is half read), and DataLoader's own handling of a failed wait follows."""
    if frame is None or frame.f_code.co_filename != selectors.__file__:
        return False
    for _ in range(8):  # select <- multiprocessing's wait <- _poll <- poll <- Queue.get <- _try_get_data
        frame = frame.f_back
        if frame is None:
            return False
        if frame.f_code.co_name == "_try_get_data" and frame.f_code.co_filename == _dataloader.__file__:
            return True
    return False
