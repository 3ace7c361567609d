"""The train log's window: the mean of each figure over the updates that were taken, a skipped one adding its time."""

import pytest

from xlsr.train.monitor import LogWindow


def test_a_skipped_update_adds_its_time_but_no_update_to_the_means():
    window = LogWindow()
    window.add({"loss": 2.0, "grad_norm": 1.0}, seconds=1.0, audio_seconds=10.0)
    window.add({"skipped": True}, seconds=3.0, audio_seconds=10.0)
    window.add({"loss": 4.0, "grad_norm": 3.0}, seconds=2.0, audio_seconds=10.0)
    assert window.count == 2
    assert window.summary() == {"loss": 3.0, "grad_norm": 2.0}
    assert (window.seconds, window.audio_seconds) == (6.0, 30.0)
    assert window.seconds_list == pytest.approx([1.0, 2.0])
