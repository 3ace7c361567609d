"""available_cores: the affinity mask a cluster job is given, not the machine's core count."""

import os
import subprocess
import sys

import pytest

from xlsr.cores import available_cores


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks on this OS")
def test_a_process_pinned_to_one_core_has_one():
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
           "from xlsr.cores import available_cores; print(available_cores(), os.cpu_count())"
    pinned, machine = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True).stdout.split()
    assert int(pinned) == 1 and int(machine) == os.cpu_count()


def test_without_affinity_masks_the_machine_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "undeterminable"
    assert available_cores() == 1
