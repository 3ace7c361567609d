"""What the library logs, as the command's own lines on stderr: `xlsr: warning: ...`.

The library only logs (`logging.getLogger(__name__)` under "xlsr"); the `xlsr` command shows its warnings the
way it prints its own errors, so a run's output reads one way whichever layer spoke. INFO records (details such as
a setting not carried over) stay out of the way, as they always were: a refusal is still one line. Library users
keep Python's logging defaults. Under torchrun only each node's first process (LOCAL_RANK 0) shows every warning;
the others show errors and the warnings about their own share of the data (their bad files), not N copies of every
warning; XLSR_LOG_ALL_RANKS=1 shows every rank's.
"""

from __future__ import annotations

import logging
import os
import sys

_WORDS = {logging.DEBUG: "debug", logging.INFO: "note", logging.WARNING: "warning", logging.ERROR: "error",
          logging.CRITICAL: "error"}


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


def _shown_on_this_process(record: logging.LogRecord) -> bool:
    """On a process other than its node's first (LOCAL_RANK, as torchrun sets it; else RANK), errors and
    RANK_OWN_WARNINGS only: a node's own warnings (its disk, its memory) are shown once on each node."""
    first = os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) == "0"
    if first or os.environ.get(ALL_RANKS_ENV, "").lower() in ("1", "true", "yes") or record.levelno >= logging.ERROR:
        return True
    return isinstance(record.msg, str) and record.msg.startswith(RANK_OWN_WARNINGS.get(record.name, ()))


class _StderrLines(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (as logging's last-resort handler does); under torchrun
    what this process alone can say, and the rest from each node's first process."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _shown_on_this_process(record) and bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            word = _WORDS.get(record.levelno, record.levelname.lower())
            sys.stderr.write(f"xlsr: {word}: {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging's own rule: a record that cannot be shown never ends the run
            self.handleError(record)


def show_library_log(level: int = logging.WARNING) -> None:
    """Route the "xlsr" loggers' records at `level` and above to stderr as `xlsr: <level word>: message`. Idempotent."""
    logger = logging.getLogger("xlsr")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())
    logger.setLevel(level)
