"""DecodingRecord (data/decoding_record.py) where the record meets its limits: a path near PATH_MAX, a copy for a
spawned DataLoader worker, a full disk, a file system that cannot map files, a process that ends itself."""

import errno
import logging
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import pytest

from xlsr.data import decoding_record
from xlsr.data.decoding_record import FOLDER, DecodingRecord


def test_a_path_as_long_as_the_system_opens_is_named_whole(tmp_path):
    audio = "/" + "a" * 4094  # 4095 bytes: the longest path Linux opens (PATH_MAX 4096 with its NUL)
    record = DecodingRecord(tmp_path / "run")
    with record.decoding(audio):
        assert DecodingRecord(tmp_path / "run").died_on == audio  # what a crash here would leave
    record.close()


def test_a_record_that_has_decoded_is_copied_without_its_mapping(tmp_path):
    (tmp_path / "run" / FOLDER).mkdir(parents=True)
    (tmp_path / "run" / FOLDER / "crashed.jsonl").write_text('{"audio": "bad.flac"}\n')
    record = DecodingRecord(tmp_path / "run")
    with record.decoding("good.flac"):
        pass
    copy = pickle.loads(pickle.dumps(record))  # how spawn and forkserver hand a DataLoader worker its dataset
    assert copy.crashed == record.crashed and list(copy.crashed) == ["bad.flac"]
    with record.decoding("next.flac"):  # the original keeps its record
        assert DecodingRecord(tmp_path / "run").died_on == "next.flac"
    record.close()


def test_a_file_system_that_cannot_map_files_is_a_warning_not_an_error(tmp_path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr(decoding_record.mmap, "mmap", refuse)
    record = DecodingRecord(tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger=decoding_record.__name__):
        for audio in ("a.flac", "b.flac"):
            with record.decoding(audio):
                pass
    warnings = [r.getMessage() for r in caplog.records if "cannot keep the record" in r.getMessage()]
    assert len(warnings) == 1 and "now-rank0" in warnings[0] and os.strerror(errno.ENODEV) in warnings[0]


FULL_DISK = textwrap.dedent("""
    import logging, sys
    logging.basicConfig()
    from xlsr.data.decoding_record import DecodingRecord
    record = DecodingRecord(sys.argv[1])
    with record.decoding("a.flac"):
        pass
    print("decoded")
""")


def test_a_full_disk_is_a_warning_not_a_bus_error(tmp_path):
    """A tmpfs of 64 KiB, filled, in a mount namespace of its own (skipped where none can be made)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    mount = tmp_path / "disk"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    script = ('mount -t tmpfs -o size=64k tmpfs "$1" && mkdir -p "$1/run/decoding" || exit 99; '
              'dd if=/dev/zero of="$1/fill" bs=4k count=64 2>/dev/null; exec "$2" -c "$3" "$1/run"')
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mount), sys.executable, FULL_DISK],
                          capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "decoded"
    assert "now-rank0: cannot keep the record of what this process decodes" in done.stderr


def test_forget_decodings_clears_a_decoding_in_progress(tmp_path):
    from xlsr.data.decoding_record import forget_decodings

    record = DecodingRecord(tmp_path / "run")
    with record.decoding("a.flac"):
        assert DecodingRecord(tmp_path / "run").died_on == "a.flac"
        forget_decodings()  # what a rank that ends itself for a failed peer (os._exit) does first
        assert DecodingRecord(tmp_path / "run").died_on is None
    record.close()


def test_a_rank_ended_for_a_failed_peer_blames_no_file(tmp_path):
    """train/elastic.py ends a rank whose peer failed with os._exit from its watcher thread (no `finally` runs):
    the file its training thread was decoding did not end it."""
    code = textwrap.dedent(f"""
        import threading, types
        from xlsr.data.decoding_record import DecodingRecord
        from xlsr.train.elastic import FailureWatch
        record = DecodingRecord({str(tmp_path / "run")!r})
        watch = types.SimpleNamespace(info=types.SimpleNamespace(rank=1), _ending=threading.Lock(),
                                      _failed_process=None)
        with record.decoding("good.flac"):
            FailureWatch.end_for_peer(watch, "rank 0 failed")
    """)
    from xlsr.train.elastic import PEER_FAILED_EXIT

    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert ended.returncode == PEER_FAILED_EXIT and "rank 1 stops: rank 0 failed" in ended.stderr
    assert DecodingRecord(tmp_path / "run").died_on is None
