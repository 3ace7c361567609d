"""Progress bars: shown by default, redrawn twice a second on a terminal and only every 30 s into a log file or CI
(where each redraw is a line of its own), silent with disable=True."""

from __future__ import annotations

import io
import sys

import pytest

from xlsr.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, interval", [(_Terminal, 0.5), (io.StringIO, 30.0)], ids=["terminal", "log-file"])
def test_redraws_suit_where_the_bar_is_written(monkeypatch, stream, interval):
    monkeypatch.setattr(sys, "stderr", stream())
    with progress(total=3, desc="train", unit="upd") as bar:
        assert (bar.mininterval, bar.disable) == (interval, False)
        bar.update(3)
    assert "train" in sys.stderr.getvalue()  # shown by default, in a log file too


def test_disable_silences_it(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with progress(range(3), desc="quiet", disable=True) as bar:
        assert list(bar) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""
