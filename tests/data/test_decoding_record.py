"""DecodingRecord (data/decoding_record.py): what the training process decodes itself is kept in the run folder, so
that a process a decoder crashed names the file to the next run, which skips it."""

import json
import os
import signal
import subprocess
import sys
import textwrap

from xlsr.data.decoding_record import CRASHED, FOLDER, DecodingRecord


def _decode_in_a_process(run_dir, audio: str, end: str) -> int:
    """A process that records decoding `audio` in `run_dir` and then ends as `end` says, inside the decoding
    ("segv", "kill") or after it ("done", "raise": the decoder raised); its exit status."""
    code = textwrap.dedent(f"""
        import os, resource, signal, sys
        from xlsr.data.decoding_record import DecodingRecord
        record = DecodingRecord({str(run_dir)!r})
        try:
            with record.decoding({audio!r}):
                if {end!r} == "segv":
                    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                    os.kill(os.getpid(), signal.SIGSEGV)
                if {end!r} == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if {end!r} == "raise":
                    raise ValueError("not audio")
        except ValueError:
            pass
    """)
    return subprocess.run([sys.executable, "-c", code], env={**os.environ}, check=False).returncode


def test_a_crash_while_decoding_names_the_file_to_the_next_run(tmp_path, caplog):
    audio = str(tmp_path / "wav" / "bad ünïcode.flac")
    assert _decode_in_a_process(tmp_path / "run", audio, "segv") == -signal.SIGSEGV
    record = DecodingRecord(tmp_path / "run")
    assert record.died_on == audio and list(record.crashed) == [audio]
    assert "an earlier run in the run folder" in record.crashed[audio] and "ended while decoding it" in record.crashed[audio]
    assert any(audio in r.getMessage() for r in caplog.records)  # a warning at the start says so
    assert not (tmp_path / "run" / FOLDER / CRASHED).exists()  # nothing written before the first decoding
    with record.decoding(str(tmp_path / "other.flac")):
        pass
    lines = (tmp_path / "run" / FOLDER / CRASHED).read_text().splitlines()
    assert [json.loads(line)["audio"] for line in lines] == [audio]
    record.close()
    # the run after that one: the file is still skipped, and the finished decoding named nothing new
    later = DecodingRecord(tmp_path / "run")
    assert later.died_on is None and list(later.crashed) == [audio]


def test_the_start_warning_says_how_to_give_a_wrongly_blamed_file_back_and_that_works(tmp_path, caplog):
    audio = str(tmp_path / "a.flac")
    assert _decode_in_a_process(tmp_path / "run", audio, "kill") == -signal.SIGKILL  # killed from outside
    record = DecodingRecord(tmp_path / "run")
    crashed = tmp_path / "run" / FOLDER / CRASHED
    (warning,) = [r.getMessage() for r in caplog.records if audio in r.getMessage()]
    assert warning == (f"{record.crashed[audio]}; if that process was ended from outside (killed, out of memory, the "
                       f"machine went down), the file is not at fault: delete its line there to give it back")
    assert f"({crashed} lists it)" in warning
    with record.decoding(str(tmp_path / "b.flac")):
        pass
    record.close()
    crashed.write_text("")  # what the warning says to do
    assert DecodingRecord(tmp_path / "run").crashed == {}


def test_a_decoding_that_ends_or_raises_blames_nothing(tmp_path):
    for end in ("done", "raise"):
        assert _decode_in_a_process(tmp_path / "run", "a.flac", end) == 0
        record = DecodingRecord(tmp_path / "run")
        assert record.died_on is None and record.crashed == {}


def test_each_rank_keeps_its_own_record_and_reads_the_common_list(tmp_path):
    assert _decode_in_a_process(tmp_path / "run", "a.flac", "kill") == -signal.SIGKILL  # rank 0's record
    rank1 = DecodingRecord(tmp_path / "run", rank=1)
    assert rank1.died_on is None and rank1.crashed == {}
    rank0 = DecodingRecord(tmp_path / "run", rank=0)
    with rank0.decoding("b.flac"):
        pass
    assert list(DecodingRecord(tmp_path / "run", rank=1).crashed) == ["a.flac"]


def test_a_torn_line_or_a_foreign_file_is_no_file_to_skip(tmp_path):
    folder = tmp_path / "run" / FOLDER
    folder.mkdir(parents=True)
    (folder / CRASHED).write_text('{"audio": "a.flac"}\n{"audio": "b.fl')
    (folder / "now-rank0").write_bytes(b"\xff" * 16)  # a length far beyond the file
    record = DecodingRecord(tmp_path / "run")
    assert record.died_on is None and list(record.crashed) == ["a.flac"]


def test_a_file_that_crashed_another_rank_is_skipped_from_the_next_pass(tmp_path):
    assert _decode_in_a_process(tmp_path / "run", "x.flac", "segv") == -signal.SIGSEGV  # rank 0's process
    rank1 = DecodingRecord(tmp_path / "run", rank=1, world_size=2)  # started before rank 0 moved its file
    assert rank1.crashed == {}
    rank0 = DecodingRecord(tmp_path / "run", rank=0, world_size=2)
    with rank0.decoding("y.flac"):  # its first decoding moves x.flac into the common list
        pass
    rank1.refresh()  # a loader's next pass
    assert list(rank1.crashed) == ["x.flac"]


def test_the_records_of_ranks_a_resume_no_longer_has_are_read_by_all_and_moved_by_rank_0(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from xlsr.data.decoding_record import DecodingRecord
        record = DecodingRecord({str(tmp_path / "run")!r}, rank=3, world_size=4)
        with record.decoding("z.flac"):
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == -signal.SIGKILL
    rank1 = DecodingRecord(tmp_path / "run", rank=1, world_size=2)  # the run resumes with 2 ranks
    rank0 = DecodingRecord(tmp_path / "run", rank=0, world_size=2)
    assert list(rank1.crashed) == list(rank0.crashed) == ["z.flac"]
    with rank1.decoding("a.flac"):
        pass
    assert (tmp_path / "run" / FOLDER / "now-rank3").exists()  # not rank 1's to move
    with rank0.decoding("a.flac"):
        pass
    assert not (tmp_path / "run" / FOLDER / "now-rank3").exists()
    lines = (tmp_path / "run" / FOLDER / CRASHED).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"audio": "z.flac", "rank": 3}]
    assert list(DecodingRecord(tmp_path / "run", rank=0, world_size=2).crashed) == ["z.flac"]
