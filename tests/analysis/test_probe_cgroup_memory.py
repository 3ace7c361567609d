"""The probe judges its memory against what the process may still use: in a container, the memory cgroup's limit
less its usage (reclaimable file cache counted free), not the host's MemAvailable. Fake cgroup trees stand in for
/sys/fs/cgroup and /proc/self/cgroup, so that nothing depends on the machine the tests run on."""

from pathlib import Path

import pytest
import torch

import xlsr.analysis.probe_features as probe_features
from xlsr.analysis.probe_features import cgroup_headroom
from xlsr.errors import XlsrError
from xlsr.model import Wav2Vec2Config

GiB = 2**30
V1_UNLIMITED = 9223372036854771712  # what cgroup v1 writes for no limit


def cgroup_v2(folder: Path, limit: str, current: int, inactive_file: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.max").write_text(f"{limit}\n")
    (folder / "memory.current").write_text(f"{current}\n")
    (folder / "memory.stat").write_text(f"anon {current // 2}\nfile 1234\ninactive_file {inactive_file}\n"
                                        f"active_file 99\n")


def cgroup_v1(folder: Path, limit: int, usage: int, inactive_file: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (folder / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (folder / "memory.stat").write_text(f"cache 5\nrss 6\ninactive_file 7\ntotal_rss 8\n"
                                        f"total_inactive_file {inactive_file}\n")


def membership(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cgroup").write_text(text)
    return tmp_path / "cgroup"


def test_v2_the_limit_less_the_usage_that_is_not_reclaimable_cache(tmp_path):
    root = tmp_path / "fs"
    cgroup_v2(root, str(4 * GiB), current=GiB, inactive_file=GiB // 4)  # a container's own namespace: path "/"
    assert cgroup_headroom(root, membership(tmp_path, "0::/\n")) == 3 * GiB + GiB // 4
    cgroup_v2(root, "max", current=GiB)
    assert cgroup_headroom(root, membership(tmp_path, "0::/\n")) is None
    cgroup_v2(root, str(GiB), current=2 * GiB)  # over its limit already (usage can pass memory.max briefly)
    assert cgroup_headroom(root, membership(tmp_path, "0::/\n")) == 0


def test_v2_the_tightest_of_the_cgroup_and_its_parents(tmp_path):
    root = tmp_path / "fs"
    root.mkdir()  # the root cgroup has no memory.max
    cgroup_v2(root / "user.slice", str(8 * GiB), current=6 * GiB)
    cgroup_v2(root / "user.slice" / "probe.scope", "max", current=GiB)
    found = membership(tmp_path, "0::/user.slice/probe.scope\n")
    assert cgroup_headroom(root, found) == 2 * GiB
    cgroup_v2(root / "user.slice" / "probe.scope", str(GiB + 5), current=GiB)
    assert cgroup_headroom(root, found) == 5


def test_v1_memory_controller_seen_from_a_container_without_its_own_namespace(tmp_path):
    root = tmp_path / "fs"
    # the container sees its host's path in /proc/self/cgroup, and its own cgroup mounted at memory/
    cgroup_v1(root / "memory", limit=4 * GiB, usage=3 * GiB, inactive_file=GiB)
    found = membership(tmp_path, "12:pids:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n")
    assert cgroup_headroom(root, found) == 2 * GiB
    cgroup_v1(root / "memory", limit=V1_UNLIMITED, usage=3 * GiB)
    assert cgroup_headroom(root, found) == V1_UNLIMITED - 3 * GiB  # no limit: MemAvailable will be the less
    cgroup_v1(root / "memory" / "docker" / "abc", limit=GiB, usage=GiB // 2)  # the host's view of the same group
    assert cgroup_headroom(root, found) == GiB // 2


def test_nothing_to_read_is_no_figure(tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    assert cgroup_headroom(root, tmp_path / "no-such-file") is None  # not Linux
    assert cgroup_headroom(root, membership(tmp_path, "0::/\n")) is None  # no memory controller files
    assert cgroup_headroom(root, membership(tmp_path, "garbage\n\n4:memory\n")) is None
    cgroup_v2(root, "not a number", current=GiB)
    assert cgroup_headroom(root, membership(tmp_path, "0::/\n")) is None


@pytest.fixture
def container(tmp_path, monkeypatch):
    """A 64 GiB host with 60 GiB available, and this process in a v2 cgroup of 4 GiB that uses 1 GiB."""
    (tmp_path / "meminfo").write_text(f"MemTotal:       {64 * GiB // 1024} kB\nMemAvailable:   {60 * GiB // 1024} kB\n")
    cgroup_v2(tmp_path / "fs", str(4 * GiB), current=GiB)
    monkeypatch.setattr(probe_features, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(probe_features, "CGROUP_ROOT", tmp_path / "fs", raising=False)
    monkeypatch.setattr(probe_features, "PROC_CGROUP", membership(tmp_path, "0::/\n"), raising=False)
    return tmp_path


def test_in_a_container_the_probe_is_judged_against_the_cgroup_not_the_host(container, monkeypatch):
    assert probe_features.available_memory(torch.device("cpu")) == 3 * GiB
    (container / "meminfo").write_text(f"MemAvailable:   {2 * GiB // 1024} kB\n")  # the host is the tighter
    assert probe_features.available_memory(torch.device("cpu")) == 2 * GiB
    (container / "meminfo").unlink()
    assert probe_features.available_memory(torch.device("cpu")) == 3 * GiB  # the cgroup alone still counts
    base = Wav2Vec2Config.preset("base")  # all 14 layers of an hour of train audio: far more than 3 GiB
    estimate = probe_features.estimate_memory([16000 * 3600], [16000 * 60], [(base, ["cnn", *range(13)])],
                                              torch.float32)
    assert 3 * GiB < estimate.total < 60 * GiB
    with pytest.raises(XlsrError, match=r"\) of memory, and 3\.2 GB is available: probe fewer layers"):
        probe_features.check_memory(estimate, torch.device("cpu"))
    monkeypatch.setattr(probe_features, "PROC_CGROUP", container / "not-linux")
    probe_features.check_memory(estimate, torch.device("cpu"))  # no figure at all: nothing is refused


def test_without_memory_stat_no_cache_is_counted_free(tmp_path):
    root = tmp_path / "fs"
    cgroup_v2(root, str(4 * GiB), current=GiB, inactive_file=GiB)
    (root / "memory.stat").unlink()
    assert cgroup_headroom(root, membership(tmp_path, "0::/\n")) == 3 * GiB
