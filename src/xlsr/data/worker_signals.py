"""Data workers leave stopping to the trainer.

A scheduler that stops a job (SLURM's `scancel`, `kill -- -PGID`, a terminal's Ctrl-C) signals every process
of it, the data workers included. A worker that dies of SIGTERM makes PyTorch's DataLoader raise "worker
killed by signal" in the trainer mid-update, so the run ends with a traceback instead of finishing the update
and saving. Workers therefore ignore SIGINT and SIGTERM: the trainer receives them too, saves, and shuts its
workers down; a worker whose trainer is gone exits by itself (DataLoader's watchdog).
"""

import signal


def ignore_stop_signals(worker_id: int) -> None:
    """`worker_init_fn` for every DataLoader of training data."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
