"""Training logs: a progress bar, `log.jsonl` (one record per logged step), TensorBoard, and warnings.

Only rank 0 writes. Warnings (the task's health warnings, skipped steps) go to stderr (above the bar) and
into the JSONL log as `{"update": u, "warning": kind, "message": ...}`, at most once per `warn_interval`
updates per kind.

A train record also holds the data loader's running totals (`RUNNING_TOTALS`: bad audio files skipped, and utterances
too short once decoded, over the run and in the current epoch) as they stand at its update; under DDP, summed over
the ranks (each counts the files it reads; in the update's all-reduce, train/trainer.py).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from xlsr.atomic import write_text
from xlsr.errors import XlsrError
from xlsr.jsonl import parse_json
from xlsr.progress import progress


class Monitor:
    """Progress bar + JSONL + TensorBoard for one run; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, *, enabled: bool, total_updates: int, initial_update: int = 0,
                 show_progress: bool = True, tensorboard: bool = True, warn_interval: int = 200):
        self.enabled = enabled
        self.warn_interval = warn_interval
        self._last_warned: dict[str, int] = {}
        self._bar = None
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "log.jsonl", "a", buffering=1)  # noqa: SIM115 - open for the run
        if tensorboard:
            try:
                # lazy: tensorboard takes ~0.6 s to import, and a run may turn it off (or lack it: ImportError)
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=initial_update or None)
            except ImportError:
                self._tb = None
        self._bar = progress(total=total_updates, desc="train", unit="upd",
                             disable=not show_progress, initial=initial_update)

    def set_description(self, desc: str) -> None:
        """Name shown at the left of the bar."""
        if self._bar is not None:
            self._bar.set_description(desc)

    def log(self, split: str, update: int, values: dict) -> None:
        """One JSONL record (and TensorBoard scalars under `split/`)."""
        if not self.enabled:
            return
        record = {"update": update, "split": split, "time": round(time.time(), 3)}
        record.update({k: finite_or_null(_plain(v)) for k, v in values.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                v = _plain(v)
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(f"{split}/{k}", v, update)

    def advance(self, n: int, postfix: dict) -> None:
        """Move the bar by `n` updates and show the short postfix."""
        if self._bar is not None:
            self._bar.update(n)
            self._bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)

    def warn(self, kind: str, message: str, update: int, *, force: bool = False) -> None:
        """A rate-limited warning on stderr and in the log."""
        if not self.enabled:
            return
        last = self._last_warned.get(kind)
        if not force and last is not None and update - last < self.warn_interval:
            return
        self._last_warned[kind] = update
        line = f"xlsr: warning: update {update}: {message}"
        if self._bar is not None and not self._bar.disable:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)
        self._jsonl.write(json.dumps({"update": update, "warning": kind, "message": message}) + "\n")

    def info(self, message: str) -> None:
        """A plain line above the bar (rank 0 only)."""
        if not self.enabled:
            return
        if self._bar is not None and not self._bar.disable:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        """Flush and close everything."""
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
        self._bar = self._tb = self._jsonl = None


TRAINED_KEY = "trained_s."  # + a language: pretraining's seconds of its audio trained on so far (a run total)
SAMPLING_REPORT = "sampling.json"  # pretraining's RUN/sampling.json: each language's hours and the share p_l aimed at

#: train log entries that count from the start of the run or of the epoch: a record holds the value at its update
#: (a mean over the updates since the last record would be less than was counted)
RUNNING_TOTALS = ("bad_files", "epoch_bad_files", "short_files", "epoch_short_files")


def loader_totals(loader) -> dict[str, int]:
    """The RUNNING_TOTALS that `loader` keeps (a shard loader counts no short files), for the train log."""
    return {name: int(getattr(loader, name)) for name in RUNNING_TOTALS if hasattr(loader, name)}


class LogWindow:
    """Running sums of the train logs, time and audio seconds between two log lines; the latest value of the
    running totals (RUNNING_TOTALS, and the task's `counted_logs` given as `totals`)."""

    def __init__(self, totals: tuple[str, ...] = ()):
        self.totals = frozenset((*RUNNING_TOTALS, *totals))  # logs whose latest value the record holds
        self.logs: dict[str, float] = {}
        self.latest: dict[str, int | float] = {}
        self.count = 0
        self.seconds = 0.0
        self.seconds_list: list[float] = []
        self.data_wait = 0.0
        self.audio_seconds = 0.0

    def add(self, logs: dict, seconds: float, audio_seconds: float) -> None:
        """One update's logs (a skipped update adds its time only)."""
        self.seconds += seconds
        self.audio_seconds += audio_seconds
        if logs.get("skipped"):
            return
        self.seconds_list.append(seconds)
        self.count += 1
        for k, v in logs.items():
            if not isinstance(v, int | float) or isinstance(v, bool):
                continue
            if k in self.totals:
                self.latest[k] = v
            else:
                self.logs[k] = self.logs.get(k, 0.0) + float(v)

    def summary(self) -> dict:
        """The mean of each log over the counted updates, and the running totals as the last of them left them."""
        return {**{k: v / max(self.count, 1) for k, v in self.logs.items()}, **self.latest}


def accumulate_logs(acc: dict, logs: dict, weight: float, summed: tuple) -> None:
    """Add `logs` into `acc`: summed keys as they are, the rest weighted by `weight`."""
    for k, v in logs.items():
        if hasattr(v, "item"):
            v = v.detach().float().item() if v.numel() == 1 else None
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        acc[k] = acc.get(k, 0.0) + (float(v) if k in summed else float(v) * weight)


def read_log(path: Path) -> list[dict]:
    """The records of a `log.jsonl` (a torn last line from a kill is skipped)."""
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise XlsrError(f"{path}:{number}: not UTF-8 text (is this a run's log.jsonl?)") from None
            try:
                records.append(parse_json(line))
            except json.JSONDecodeError:
                continue
    return records


def trim_log(path: Path, update: int) -> None:
    """Drop the records of a `log.jsonl` past `update` (and a torn last line): a run resumed from the checkpoint
    of that update logs the later updates again."""
    _rewrite_log(path, lambda line: line.endswith("\n") and _logged_by(line, update))


def drop_validation_records(path: Path, update: int) -> None:
    """Drop the validation records and warnings of `update` from a `log.jsonl`: a validation that failed there may
    have logged some of its sets, and the resumed run logs them all again."""
    _rewrite_log(path, lambda line: not _validation_record(line, update))


def _rewrite_log(path: Path, keep) -> None:
    """Keep the lines of a `log.jsonl` for which keep(line) holds, rewritten atomically only if any is dropped."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if keep(line)]
    if len(kept) < len(lines):
        write_text(path, "".join(kept))


def _validation_record(line: str, update: int) -> bool:
    try:
        record = parse_json(line)
    except json.JSONDecodeError:
        return False
    if not isinstance(record, dict) or record.get("update") != update:
        return False
    return str(record.get("split", "")).startswith("valid") or str(record.get("warning", "")).startswith("valid_")


def _logged_by(line: str, update: int) -> bool:
    try:
        record = parse_json(line)
    except json.JSONDecodeError:
        return False
    return not isinstance(record, dict) or not isinstance(record.get("update"), int) or record["update"] <= update


def finite_or_null(value):
    """`value` with every inf or NaN float, however deeply nested in dicts and lists, replaced by None: JSON has no
    inf or NaN, and this project's JSON files (log.jsonl, demo.json) write them as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def _plain(v):
    """A tensor's or NumPy scalar's Python number (anything else as it is)."""
    return v.item() if hasattr(v, "item") else v


def _short(v):
    v = _plain(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return v
