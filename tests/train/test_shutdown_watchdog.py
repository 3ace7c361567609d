"""A rank that hangs while leaving the process group ends itself with its stack, instead of holding the job."""

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import time
    import torch.distributed as dist
    from xlsr.train import distributed
    from xlsr.train.distributed import DistInfo

    dist.is_initialized = lambda: True
    def hang_in_teardown():
        time.sleep({sleep})
    dist.destroy_process_group = hang_in_teardown
    distributed.shutdown(DistInfo(rank=0, world_size=2), timeout_s=1.0)
    print("left the group", flush=True)
    time.sleep({after})  # past the watchdog's time: an armed watchdog would end the process here
    print("still running")
""")


def _run(sleep: float, after: float = 0.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SCRIPT.format(sleep=sleep, after=after)], capture_output=True, text=True,
                          timeout=60)


def test_a_hang_in_teardown_ends_the_rank_with_where_it_stopped():
    done = _run(sleep=30)
    assert done.returncode == 1
    assert "left the group" not in done.stdout
    assert "Timeout" in done.stderr and "hang_in_teardown" in done.stderr


def test_a_quick_teardown_is_untouched_and_the_watchdog_is_disarmed():
    done = _run(sleep=0, after=2.0)
    assert done.returncode == 0, done.stderr
    assert "left the group" in done.stdout and "still running" in done.stdout
