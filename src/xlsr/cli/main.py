"""The `xlsr` command: a thin dispatcher over one module per subcommand.

Each module in COMMANDS defines `register(subparsers)`, which adds its parser and sets
`func=run` with `set_defaults`. `run(args)` calls library functions and returns an exit code.
A module whose options are costly to build (they import torch) also defines `HELP`: unless it is the
command being run, it is listed with that line only, so `xlsr --help` and light commands start fast.
User errors (XlsrError, missing files) become one line on stderr and exit code 2, never a traceback; Ctrl-C, and a
training run stopped by it or SIGTERM inside a longer command (TrainingInterrupted), exit with 130.
The library's warnings are shown as cli/log_lines.py says (under torchrun, once per node).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import io
import os
import re
import signal
import sys
from typing import NoReturn

from xlsr.cli import INTERRUPTED
from xlsr.cli.log_lines import show_library_log
from xlsr.errors import SettingsError, TrainingInterrupted, XlsrError
from xlsr.version import __version__

BROKEN_PIPE = 141  # the shell's status for a process ended by SIGPIPE (128 + 13)
TERMINATED = 143  # the shell's status for a process stopped by SIGTERM (128 + 15)

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

class _Parser(argparse.ArgumentParser):
    """argparse's parser (every command's: subparsers take their parent's class), with refusals of one line: its
    usage message runs to 47 lines for `xlsr pretrain`. A mistyped option gets the nearest one; a negative number in
    exponent form (`--word-score -1e-3`) is a value, not an option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{_nearest_option(self, message)} (see `{self.prog} --help`)\n")


def _nearest_option(parser: argparse.ArgumentParser, message: str) -> str:
    """"; did you mean --max-updates?" for an unrecognized option a typo away from one of `parser`'s; "" otherwise."""
    if not message.startswith("unrecognized arguments: "):
        return ""
    given = next((a.split("=")[0] for a in message.split()[2:] if a.startswith("--")), None)
    known = [s[2:] for action in parser._actions for s in action.option_strings if s.startswith("--")]
    # compared without the dashes, which every name shares: with them `--bogus` was "near" --out
    near = difflib.get_close_matches(given[2:], known, n=1) if given else []
    return f"; did you mean --{near[0]}?" if near else ""


def _mark_command_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser in the namespace it parses (`command_parser`), to refuse what it does not know."""
    parser.set_defaults(command_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_command_parsers(sub)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `xlsr` parser; given `argv`, only the command it names gets its full options (the rest: name and help)."""
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    parser = _Parser(
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
            _mark_command_parsers(sub.choices[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = [_home_expanded(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:  # the parser imports the command's modules (torch among them: a second or more)
        parser = build_parser(argv)
        with _said_by_the_first_on_node():  # a mistyped option: said once per node, not once per process
            args, unknown = parser.parse_known_args(argv)
            if unknown:  # said by the command's parser, which knows the options meant (the top one knows none)
                getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    except KeyboardInterrupt:  # Ctrl-C as it starts: nothing begun, nothing to say but that
        print("xlsr: interrupted", file=sys.stderr)
        return INTERRUPTED
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    show_library_log()
    with _sigterm_as_ctrl_c() as term:
        status = _run_command(args)
    return TERMINATED if term.received and status == INTERRUPTED else status


def _run_command(args: argparse.Namespace) -> int:
    """The command's exit status; its errors as one line each (module docstring)."""
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:  # a run stopped by Ctrl-C/SIGTERM inside a longer command: as Ctrl-C
        print(f"xlsr: interrupted: {exc}", file=sys.stderr)
        return INTERRUPTED
    except XlsrError as exc:
        if not (isinstance(exc, SettingsError) and _a_later_process_on_node()):
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
    except RuntimeError as exc:  # Path.resolve() on Python < 3.13 meets a loop of links so (3.13: an OSError, above)
        # the name from the OSError it was raised in: the message holds its repr, in double quotes for a name with `'`
        looped = exc.__context__ if str(exc).startswith("Symlink loop from ") else None
        if not isinstance(looped, OSError) or looped.filename is None:
            raise
        print(f"xlsr: error: {looped.filename}: too many levels of symbolic links", file=sys.stderr)
        return 2


class _Received:
    received = False


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """Inside, SIGTERM (a service manager's or SLURM's stop, `kill`) stops the command as Ctrl-C does: what it kept is
    said (a transcription's partial results, a check's progress) and the exit status is 143, where SIGTERM's default
    ended it without a word. Training handles SIGTERM itself (it saves); under torchrun, which sends it to the ranks
    it tears down, the default stays; so it does where signals cannot be set (not the main thread)."""
    term = _Received()
    if _several_processes():
        yield term
        return

    def stop(signum, frame):
        term.received = True
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield term
        return
    try:
        yield term
    finally:
        signal.signal(signal.SIGTERM, previous)


def _home_expanded(arg: str) -> str:
    """`~/x` and `--out=~/x` as the home folder's x: the shell expands neither after `=`, nor in quotes, and `xlsr
    pretrain --out=~/runs` made a folder named `~` in the working folder. Only `~` and `~/...` (a path; `~user` stays)."""
    option, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if value == "~" or value.startswith("~/"):
        return f"{option}{eq}{os.path.expanduser(value)}"
    return arg


def _a_later_process_on_node() -> bool:
    """Under torchrun, a process other than its node's first (LOCAL_RANK 0). Every process of the job runs the same
    command line on the node's files, so what depends on those alone (SettingsError, argparse's refusals) the first
    says for all; an error a process meets later, after the ranks connect, train/elastic.py says once."""
    local_rank = os.environ.get("LOCAL_RANK", "0").strip()  # torchrun's; a process started by hand says its own
    return local_rank not in ("", "0") and _several_processes()


def _several_processes() -> bool:
    """A job of several processes (torchrun's WORLD_SIZE, or one set so by hand)."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1")


@contextlib.contextmanager
def _said_by_the_first_on_node():
    """Inside, a later process on its node (see above) writes nothing (argparse's usage, error, --help): it exits as
    the first does, with the same status, and the first says why."""
    if not _a_later_process_on_node():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush of it at exit does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured): nothing left to flush into the pipe
        pass


if __name__ == "__main__":
    sys.exit(main())
