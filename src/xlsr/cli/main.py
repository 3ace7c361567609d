"""The `xlsr` command: a thin dispatcher over one module per subcommand.

Each module in COMMANDS defines `register(subparsers)`, which adds its parser and sets
`func=run` with `set_defaults`. `run(args)` calls library functions and returns an exit code.
A module whose options are costly to build (they import torch) also defines `HELP`: unless it is the
command being run, it is listed with that line only, so `xlsr --help` and light commands start fast.
User errors (XlsrError, missing files) become one line on stderr and exit code 2, never a traceback; Ctrl-C, and a
training run stopped by it or SIGTERM inside a longer command (TrainingInterrupted), exit with 130.
Under torchrun only each node's first process (LOCAL_RANK 0) shows every warning (a node's own, such as an index
cache it cannot write, included); the others show errors and the warnings about their own share of the data (their
bad files), not N copies of every warning; XLSR_LOG_ALL_RANKS=1 shows every rank's.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from xlsr.cli import INTERRUPTED
from xlsr.cli.log_lines import show_library_log
from xlsr.errors import TrainingInterrupted, XlsrError
from xlsr.version import __version__

BROKEN_PIPE = 141  # the shell's status for a process ended by SIGPIPE (128 + 13)

# Subcommand modules under xlsr.cli, in the order `xlsr --help` lists them.
COMMANDS = [
    "synth",
    "data",
    "pretrain",
    "finetune",
    "transcribe",
    "stream",
    "evaluate",
    "lm",
    "analyze",
    "probe",
    "convert",
    "plot",
    "demo",
]

# Under torchrun every rank runs the same code on the same settings, so nearly every warning (a folder without dev
# manifests, a vocabulary note, the data report) is the same on each: rank 0 says it once. What only a rank can say
# is what it meets reading its own share of an epoch: its bad audio files, the languages and short files they add up
# to. These are the openings of those messages, by logger (the shard loader's notes on the shards the rank streams
# are logged as "%s").
RANK_OWN_WARNINGS = {
    "xlsr.data.batching": ("skipping bad audio: ", "language %s: %d of %s in epoch %d",
                           "epoch %d: %d of %d planned utterances were skipped"),
    "xlsr.data.shard_loader": ("skipping bad audio: ", "%s"),
}
ALL_RANKS_ENV = "XLSR_LOG_ALL_RANKS"  # "1": every rank shows every warning


class _RankZeroWarnings(logging.Filter):
    """On a process other than its node's first (LOCAL_RANK, as torchrun sets it; else RANK), passes errors and
    RANK_OWN_WARNINGS only: a node's own warnings (its disk, its memory) are shown once on each node."""

    def filter(self, record: logging.LogRecord) -> bool:
        first = os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) == "0"
        if first or os.environ.get(ALL_RANKS_ENV, "").lower() in ("1", "true", "yes"):
            return True
        if record.levelno >= logging.ERROR:
            return True
        return isinstance(record.msg, str) and record.msg.startswith(RANK_OWN_WARNINGS.get(record.name, ()))


def _show_library_log_from_rank_0() -> None:
    """The library's warnings on stderr (cli/log_lines.py), those every rank would give alike from rank 0 only."""
    show_library_log()
    for handler in logging.getLogger("xlsr").handlers:
        if not any(isinstance(f, _RankZeroWarnings) for f in handler.filters):
            handler.addFilter(_RankZeroWarnings())


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `xlsr` parser; given `argv`, only the command it names gets its full options (the rest: name and help)."""
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    parser = argparse.ArgumentParser(
        prog="xlsr",
        description="Cross-lingual speech representation learning: pretrain, fine-tune, transcribe, "
        "evaluate, analyze and convert wav2vec 2.0 / XLSR models.",
    )
    parser.add_argument("--version", action="version", version=f"xlsr {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"xlsr.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"xlsr.cli.{name}":
                continue  # command not built yet
            raise
        if argv is not None and name != chosen and hasattr(module, "HELP"):
            sub.add_parser(name, help=module.HELP)
        else:
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    _show_library_log_from_rank_0()
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:  # a run stopped by Ctrl-C/SIGTERM inside a longer command: as Ctrl-C
        print(f"xlsr: interrupted: {exc}", file=sys.stderr)
        return INTERRUPTED
    except XlsrError as exc:
        print(f"xlsr: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `xlsr ... | head`: the reader has all it wanted; nothing to say (as `cat` says nothing)
        _quiet_stdout()
        return BROKEN_PIPE
    except FileNotFoundError as exc:
        print(f"xlsr: error: {exc.filename or exc}: no such file or directory", file=sys.stderr)
        return 2
    except OSError as exc:  # not writable, a file where a folder should be, a full disk: the path and the reason
        reason = (exc.strerror or str(exc)).lower()
        if isinstance(exc, NotADirectoryError | FileExistsError):
            reason = "a file is in the way where a folder is needed"
        print(f"xlsr: error: {exc.filename}: {reason}" if exc.filename else f"xlsr: error: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xlsr: interrupted", file=sys.stderr)
        return INTERRUPTED


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush of it at exit does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured): nothing left to flush into the pipe
        pass


if __name__ == "__main__":
    sys.exit(main())
