"""Decoders for the DecoderPool timeout tests: module-level functions, which a spawned worker finds by name. A file
is chosen by a word in its name."""

import os
import time
from pathlib import Path


def name_or_hang(path):
    """The file's name; a "hang" file never returns, a "slow" one after 0.6 s."""
    name = Path(path).name
    if "hang" in name:
        while True:
            time.sleep(1)
    if "slow" in name:
        time.sleep(0.6)
    return name


def hang_with_a_child(path):
    """On a "hang" file: fork a child that holds every descriptor of this process (the worker's pipe included, as a
    helper process a decoder starts might) and writes its pid to the file CHILD_PID names, then never return."""
    if "hang" in Path(path).name:
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
        with open(os.environ["CHILD_PID"], "w") as f:
            f.write(str(child))
        while True:
            time.sleep(1)
    return Path(path).name


def started_late(path):  # pragma: no cover - a worker hangs importing this module (below) before it can run it
    return path


# the test's process imported this module before it set HANG_ON_IMPORT; a worker, importing it to find
# `started_late`, inherits the variable and never starts
if os.environ.get("HANG_ON_IMPORT") == "1":
    time.sleep(3600)


def pid_then_hang(path):
    """Write this worker's pid to the file WORKER_PID names, then never return (a decoder hung on a damaged file)."""
    with open(os.environ["WORKER_PID"], "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(1)


def marked_slow_steps(path):
    """Write the file STARTED names as it begins, then take 1 s in small steps (a decoding that a stop of the whole
    process group interrupts and that goes on after it, its time not made up at once); return the file's name."""
    with open(os.environ["STARTED"], "a") as f:
        f.write(f"{path}\n")
    for _ in range(20):
        time.sleep(0.05)
    return Path(path).name
