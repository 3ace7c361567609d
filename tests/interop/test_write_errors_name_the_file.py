"""A write that fails (full disk, read-only folder, data that never reached the disk) is one line naming the file
or folder the user asked for: not a torch traceback, not a hidden temporary name, not no name at all. What was
written is readable by others as usual files are (umask), not private as temporary files are made."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest
import torch

from xlsr.atomic import write_dir, write_text
from xlsr.cli.main import main
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> Wav2Vec2ForPreTraining:
    """A very small model that every format holds (fairseq wants a CNN narrower than the Transformer)."""
    torch.manual_seed(0)
    return Wav2Vec2ForPreTraining(Wav2Vec2Config(
        conv_layers=[(32, 10, 5), (32, 3, 2), (32, 2, 2)], hidden_size=48, num_layers=2, num_heads=4, ffn_dim=96,
        conv_pos=8, conv_pos_groups=4, final_dim=24, codevector_dim=24, num_codevectors_per_group=10))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("src") / "tiny", _model())


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a failed write() or close() raises: no file name


def _torch_zip_writer_full(obj, f, *args, **kwargs):
    """torch.save on a full disk: its zip writer's RuntimeError, raised while handling the file's OSError."""
    try:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_a_full_disk_names_the_file_written(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", _no_space)
    with pytest.raises(OSError) as caught:
        write_text(tmp_path / "report.json", "{}")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "report.json")
    assert list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("to", ["xlsr", "hf"])
def test_convert_onto_a_full_disk_names_the_output(tiny, tmp_path, monkeypatch, capsys, to):
    monkeypatch.setattr("xlsr.interop.safetensors_file.open", _no_space, raising=False)
    assert main(["convert", str(tiny), str(tmp_path / "out"), "--to", to]) == 2
    assert _error_line(capsys) == f"xlsr: error: {tmp_path / 'out'}: no space left on device"
    assert list(tmp_path.iterdir()) == []


def test_convert_to_fairseq_onto_a_full_disk_is_one_line_naming_the_checkpoint(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch, "save", _torch_zip_writer_full)
    assert main(["convert", str(tiny), str(tmp_path / "out"), "--to", "fairseq"]) == 2
    assert _error_line(capsys) == f"xlsr: error: {tmp_path / 'out' / 'checkpoint.pt'}: no space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, where every write is ENOSPC")
def test_torch_save_onto_a_full_device_is_an_oserror_naming_it():
    from xlsr.atomic import save_torch  # what every torch.save of xlsr goes through

    with pytest.raises(OSError) as caught:
        save_torch({"w": torch.zeros(100_000)}, "/dev/full")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/dev/full"


def test_a_read_only_folder_names_the_output_not_its_temporary_name(tmp_path, monkeypatch):
    def read_only(prefix="", dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, prefix + "rm37kbbf"))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(OSError) as caught:
        write_dir(tmp_path / "out", lambda tmp: None)
    assert caught.value.filename == str(tmp_path / "out")


def test_a_file_that_did_not_reach_the_disk_fails_the_save(tmp_path, monkeypatch):
    real = os.fsync

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))  # a write-back error: the data is not on disk
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # a filesystem that cannot sync folders: fine
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    model = _model()
    with pytest.raises(OSError) as caught:
        save_checkpoint(tmp_path / "ckpt", model)
    assert caught.value.errno == errno.EIO and caught.value.filename == str(tmp_path / "ckpt" / "config.json")
    assert list(tmp_path.iterdir()) == []  # never renamed into place as if it were saved
    monkeypatch.setattr(os, "fsync", lambda fd: fsync(fd) if stat.S_ISDIR(os.fstat(fd).st_mode) else real(fd))
    save_checkpoint(tmp_path / "ckpt", model)  # only folders' fsync failing (EINVAL) is no error


def test_written_folders_and_files_have_the_usual_permissions(tiny, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["convert", str(tiny), str(tmp_path / "hf"), "--to", "hf"]) == 0
        save_checkpoint(tmp_path / "ckpt", _model())
        write_text(tmp_path / "notes.txt", "x")
    finally:
        os.umask(old)
    for folder in ("hf", "ckpt"):  # another user can read an exported model
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o755
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in (tmp_path / folder).iterdir())
    assert stat.S_IMODE((tmp_path / "notes.txt").stat().st_mode) == 0o644
