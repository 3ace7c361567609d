"""atomic.write_dir's hidden folders: the fresh folder a killed writer was filling, and an existing target it had set
aside, are removed by the next write_dir of the same target (the set-aside one only once the new target is in place),
never a live writer's, nor another target's; and a target whose name is near the 255-byte limit of a name is written,
by write_dir as by write_file, with the same removal of killed writers' temporaries and no other's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _atomic_writers import dead_pid, finish, hidden, killed_writer, live_writer, needs_machine

from xlsr import atomic
from xlsr.atomic import write_dir, write_file, write_text
from xlsr.train.checkpoint import clean_staging


def _fill(folder: Path, text: str = "new") -> None:
    (folder / "weights.bin").write_text(text)


@needs_machine
def test_a_killed_writers_folder_is_removed_by_the_next_write_of_the_target(tmp_path):
    out = tmp_path / "adapter"
    left = killed_writer(out)
    assert hidden(tmp_path) == {left}
    write_dir(out, _fill)
    assert hidden(tmp_path) == set() and (out / "weights.bin").read_text() == "new"


@needs_machine
def test_a_live_writer_in_another_process_keeps_its_folder_and_finishes(tmp_path):
    out = tmp_path / "adapter"
    with live_writer(out, "dir") as (child, filling):
        write_dir(out, _fill)  # meanwhile: the child's pid is running, so its folder is kept
        assert hidden(tmp_path) == {filling} and (tmp_path / filling / "weights.bin").read_text() == "child"
        assert finish(child) == 0
    assert hidden(tmp_path) == set() and (out / "weights.bin").read_text() == "child"  # its rename found its folder


@needs_machine
def test_a_set_aside_target_of_a_killed_writer_goes_only_once_the_new_one_is_in_place(tmp_path):
    # a writer killed between its two renames: `out` is gone, the old one set aside, the new one still hidden
    dead, machine = dead_pid(), atomic._machine()
    aside, filled = tmp_path / f".out.{dead}-{machine}.old-a1b2c3d4", tmp_path / f".out.{dead}-{machine}.tmp-e5f6g7h8"
    (aside / "out").mkdir(parents=True)
    _fill(aside / "out", "old")
    filled.mkdir()
    _fill(filled)

    def fails(folder: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_dir(tmp_path / "out", fails)
    assert hidden(tmp_path) == {aside.name}  # the only copy of the old one is kept while there is no new one
    assert (aside / "out" / "weights.bin").read_text() == "old"

    def write(folder: Path) -> None:
        assert aside.is_dir()  # still there while the new one is written
        _fill(folder)

    write_dir(tmp_path / "out", write)
    assert hidden(tmp_path) == set() and (tmp_path / "out" / "weights.bin").read_text() == "new"


@needs_machine
def test_only_this_targets_folders_of_dead_writers_on_this_machine_are_removed(tmp_path):
    dead, live, machine = dead_pid(), os.getppid(), atomic._machine()
    other_machine = "0123abcd" if machine != "0123abcd" else "4567cdef"
    names = {
        f".out.{dead}-{machine}.tmp-a1b2c3d4": False,  # a killed writer's fresh folder: removed
        f".out.{dead}-{machine}.old-a1b2c3d4": False,  # the target it had set aside: removed (a new one is in place)
        f".out.{live}-{machine}.tmp-e5f6g7h8": True,  # a running process's
        f".out.{os.getpid()}-{machine}.tmp-i9j0k1l2": True,  # another thread of this process
        f".out.{dead}-{other_machine}.tmp-m3n4o5p6": True,  # another host or container: its pid is not ours
        ".out.tmp-q7r8s9t0": True,  # an earlier version's name: whose it was is unknown
        f".out.5.{dead}-{machine}.tmp-u1v2w3x4": True,  # the target out.5's, not out's
        f".out.{dead}-{machine}.a1b2c3d4.tmp": True,  # write_file's file `out`: not a folder write_dir made
    }
    for name in names:
        if name.endswith(".tmp"):
            (tmp_path / name).write_text("x")
        else:
            (tmp_path / name).mkdir()
    write_dir(tmp_path / "out", _fill)
    assert hidden(tmp_path) == {n for n, kept in names.items() if kept}


@needs_machine
def test_checkpoint_staging_cleanup_still_finds_write_dirs_folders(tmp_path):
    root = tmp_path / "checkpoints"
    left = killed_writer(root / "update_0000010")
    aside = root / f".update_0000010.{dead_pid()}-{atomic._machine()}.old-a1b2c3d4"
    aside.mkdir()
    clean_staging(root)
    assert hidden(root) == set() and left.startswith(".update_0000010.")


# -------------------------------------------------------------------------------- names near the 255-byte limit
def _long(tmp_path: Path, end: str) -> Path:
    return tmp_path / ("k" * 245 + end)  # 250 bytes: a name may have 255


def test_a_folder_with_a_250_byte_name_is_written_and_replaced(tmp_path):
    out = _long(tmp_path, ".ckpt")
    write_dir(out, _fill)
    write_dir(out, lambda folder: _fill(folder, "newer"))  # the old one is set aside under a hidden name too
    assert [p.name for p in tmp_path.iterdir()] == [out.name] and (out / "weights.bin").read_text() == "newer"


def test_a_file_with_a_250_byte_name_is_written(tmp_path):
    out = _long(tmp_path, ".json")
    write_text(out, "{}")
    assert [p.name for p in tmp_path.iterdir()] == [out.name] and out.read_text() == "{}"


@needs_machine
@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_killed_writer_of_a_250_byte_name_is_cleaned_up_and_another_long_targets_is_not(tmp_path, kind):
    mine, other = _long(tmp_path, ".ab01"), _long(tmp_path, ".ab02")  # the same first 249 bytes
    left_mine, left_other = killed_writer(mine, kind), killed_writer(other, kind)
    assert max(len(os.fsencode(n)) for n in (left_mine, left_other)) <= 255 and left_mine != left_other
    if kind == "dir":
        write_dir(mine, _fill)
    else:
        write_file(mine, lambda tmp: tmp.write_text("new"))
    assert hidden(tmp_path) == {left_other}
