"""The ranks of a multi-process test: fresh interpreters, a deadline, and every thread's stack if one hangs.

Fresh interpreters (spawn), not fork. By the time these tests run, the pytest process has threads of its own
(torch's pools, earlier tests' helpers), and a child forked from a multi-threaded process can inherit a lock that
another thread held at that instant and wait on it forever. Forked ranks hung in two full-suite runs (on CI for
10 minutes; locally, in gloo's teardown by gdb); the error-path test alone in a loop, about 200 times, never did.
Spawning costs each rank about 1.5 s of imports; fork's speed is not worth a suite that can stall.

A rank still running at the deadline prints every thread's Python stack (faulthandler) and exits 1, so a hang
fails its test within minutes, showing where it stopped, instead of holding CI until its limit.
"""

from __future__ import annotations

import faulthandler
import socket
import time
from collections.abc import Callable

import torch.multiprocessing as mp

DEADLINE_S = 180  # every rank of these tests ends within 30 s on 2 busy cores


def _rank_main(target: Callable, rank: int, args: tuple, deadline_s: float) -> None:
    faulthandler.dump_traceback_later(deadline_s, exit=True)  # a C thread: it fires even if Python is stuck
    target(rank, *args)


def start(target: Callable, args: tuple, nprocs: int = 2, deadline_s: float = DEADLINE_S) -> list:
    """Start `target(rank, *args)` for rank 0..nprocs-1, each in a fresh interpreter (target: a module function)."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(target, rank, args, deadline_s)) for rank in range(nprocs)]
    for p in procs:
        p.start()
    return procs


def wait(procs: list, deadline_s: float = DEADLINE_S + 30) -> tuple[list[int], list[float]]:
    """Each rank's exit code and the seconds until it ended; a rank alive after `deadline_s` is killed (-9)."""
    t0, ended = time.monotonic(), [0.0] * len(procs)
    while any(p.is_alive() for p in procs) and time.monotonic() - t0 < deadline_s:
        for r, p in enumerate(procs):
            if not ended[r] and not p.is_alive():
                ended[r] = time.monotonic() - t0
        time.sleep(0.05)
    for r, p in enumerate(procs):
        ended[r] = ended[r] or time.monotonic() - t0
        if p.is_alive():
            p.kill()
        p.join()
    return [p.exitcode for p in procs], ended


def run(target: Callable, args: tuple, nprocs: int = 2) -> None:
    """Run every rank to the end; fails the test unless every rank exits 0 (their output is in the test's)."""
    codes, _ = wait(start(target, args, nprocs))
    assert codes == [0] * nprocs, f"the ranks exited with {codes}; their output is above"


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all sockets held open together while choosing)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
