"""Data workers leave stopping to the trainer.

A scheduler that stops a job (SLURM's `scancel`, `kill -- -PGID`, a terminal's Ctrl-C) signals every process
of it, the data workers included. A worker that dies of SIGTERM makes PyTorch's DataLoader raise "worker
killed by signal" in the trainer mid-update, so the run ends with a traceback instead of finishing the update
and saving. Workers therefore ignore SIGINT and SIGTERM: the trainer receives them too, saves, and shuts its
workers down; a worker whose trainer is gone exits by itself (DataLoader's watchdog).

The one who must then stop them is us: at the end of a script that still holds a loader, Python's exit
terminates daemon children with SIGTERM and waits for them, and workers that ignore it would be waited on for
ever. Every loader with workers is therefore registered here and closed (its workers told to stop, as
DataLoader does when its iterator goes away) before that happens.
"""

import atexit
import signal
import weakref

_OPEN = weakref.WeakSet()  # loaders that may hold worker processes; each has close()


def ignore_stop_signals(worker_id: int) -> None:
    """`worker_init_fn` for every DataLoader of training data."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def close_at_exit(loader) -> None:
    """Register `loader` (anything with close()) to be closed at interpreter exit, before multiprocessing's own exit
    hook (registered at its import, earlier, so it runs later) terminates and joins the daemon workers."""
    if not _OPEN and not getattr(close_at_exit, "registered", False):
        atexit.register(_close_open_loaders)
        close_at_exit.registered = True
    _OPEN.add(loader)


def _close_open_loaders() -> None:
    for loader in list(_OPEN):
        loader.close()
