"""Resume journey (session 33): what a user whose machine or copy went wrong meets when writing or resuming a run."""

import os
import shutil
from pathlib import Path

import pytest

from xlsr.atomic import write_text
from xlsr.cli.main import main
from xlsr.errors import CheckpointError
from xlsr.train import checkpoint as ckpt


def test_a_file_whose_temporary_cannot_be_made_is_named_as_asked_for(tmp_path, monkeypatch):
    # a relative path, as `--out runs/x` gives: tempfile names its temporary by an absolute path, which the error
    # named (".config.yaml.<pid>-<machine>.<random>.tmp") instead of the file the user knows
    monkeypatch.chdir(tmp_path)
    Path("run").write_text("a file where the run folder should be")
    with pytest.raises(OSError) as err:
        write_text(Path("run") / "config.yaml", "seed: 1\n")
    assert err.value.filename == str(Path("run") / "config.yaml")


def test_a_checkpoint_whose_staging_folder_cannot_be_made_is_named_by_its_update(tmp_path):
    # the staging folder's name is the trainer's own (.tmp-update_N-<pid>); a read-only checkpoints/ fails the same
    # call, and the error named that hidden folder instead of update_N
    root = tmp_path / "checkpoints"
    root.mkdir()
    (root / f".tmp-{ckpt.update_dir_name(8)}-{os.getpid()}").write_text("not a folder")
    with pytest.raises(OSError) as err:
        ckpt.write_checkpoint(root, 8, lambda d: None, {"update": 8})
    assert err.value.filename == str(root / ckpt.update_dir_name(8))
    assert not (root / ckpt.update_dir_name(8)).exists()


def _pretrain(data: Path, out: Path, updates: int) -> int:
    return main(["pretrain", "--data", str(data), "--preset", "tiny", "--out", str(out), "--max_updates", str(updates),
                 "--save_every", "1", "--keep_last", "2", "--valid_every", "0", "--max_tokens", "40000",
                 "--max_sample_size", "40000", "--min_sample_size", "8000", "--feature_health_frames", "0",
                 "--progress", "false", "--tensorboard", "false", "--num_workers", "0", "--langs", "es"])


def test_a_damaged_newest_checkpoint_is_refused_in_one_line_that_says_which_to_resume_from(tmp_path, capsys, one_thread):
    data, run = tmp_path / "corpus", tmp_path / "run"
    assert main(["synth", "--out", str(data), "--langs", "es", "--utts-per-lang", "20", "--clean",
                 "--words-per-utt", "2-4"]) == 0
    assert _pretrain(data, run, 2) == 0
    newest = run / "checkpoints" / ckpt.update_dir_name(2)
    with open(newest / ckpt.TRAINER_FILE, "r+b") as f:  # the user's copy went wrong
        f.truncate(1000)
    capsys.readouterr()
    assert _pretrain(data, run, 3) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xlsr: error")]
    assert len(errors) == 1
    assert f"{newest / ckpt.TRAINER_FILE}: corrupt or unreadable training state" in errors[0]
    assert f"move {newest} out of {run / 'checkpoints'}" in errors[0]
    assert f"to resume from {ckpt.update_dir_name(1)}, the checkpoint before it" in errors[0]
    # done as told, the run goes on from there
    shutil.move(newest, tmp_path / "damaged")
    assert _pretrain(data, run, 3) == 0
    assert f"resuming {run} from update 1 ({ckpt.update_dir_name(1)})" in capsys.readouterr().err
    assert ckpt.load_trainer_state(run / "checkpoints" / "last")["update"] == 3


def test_a_damaged_only_checkpoint_is_refused_saying_restore_or_start_afresh(tmp_path):
    root = tmp_path / "checkpoints"
    only = root / ckpt.update_dir_name(4)
    only.mkdir(parents=True)
    assert ckpt.earlier_checkpoint_advice(root, only) == (
        f"restore it from a good copy, or move {only} away to start the run afresh (no checkpoint before it)")


def test_a_torch_message_is_cut_to_its_first_sentence(tmp_path):
    # random bytes: torch reads them as a legacy pickle and refuses under weights_only, then advises on torch.load's
    # arguments ("In PyTorch 2.6, we changed the default ..."), cut mid-word at 120 characters before
    folder = tmp_path / "update_0000004"
    folder.mkdir()
    (folder / ckpt.TRAINER_FILE).write_bytes(bytes(range(256)) * 20)
    with pytest.raises(CheckpointError) as err:
        ckpt.load_trainer_state(folder)
    assert str(err.value).startswith(f"{folder / ckpt.TRAINER_FILE}: corrupt or unreadable training state (")
    assert "PyTorch 2.6" not in str(err.value) and str(err.value).endswith(")")
