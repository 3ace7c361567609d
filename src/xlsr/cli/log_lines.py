"""What the library logs, as the command's own lines on stderr: `xlsr: warning: ...`.

The library only logs (`logging.getLogger(__name__)` under "xlsr"); the `xlsr` command shows its warnings the
way it prints its own errors, so a run's output reads one way whichever layer spoke. INFO records (details such as
a setting not carried over) stay out of the way, as they always were: a refusal is still one line. Library users
keep Python's logging defaults.
"""

from __future__ import annotations

import logging
import sys

_WORDS = {logging.DEBUG: "debug", logging.INFO: "note", logging.WARNING: "warning", logging.ERROR: "error",
          logging.CRITICAL: "error"}


class _StderrLines(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (as logging's last-resort handler does)."""

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
