"""The checkpoint folder's rules, on folders made by hand: what counts as a complete checkpoint, what a resume picks,
what keep_last 0 keeps, and that a stale incomplete folder of the same update is replaced, not reused."""

import torch

from xlsr.train import checkpoint as ckpt


def _complete(root, update):
    folder = root / ckpt.update_dir_name(update)
    folder.mkdir(parents=True)
    (folder / ckpt.TRAINER_FILE).write_text("x")
    return folder


def test_a_folder_without_trainer_pt_is_no_checkpoint_to_resume_from(tmp_path):
    _complete(tmp_path, 4)
    incomplete = tmp_path / ckpt.update_dir_name(8)
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")  # its weights written, its trainer state not
    assert [u for u, _ in ckpt.update_dirs(tmp_path)] == [4]
    assert ckpt.find_resume_dir(tmp_path).name == "update_0000004"


def test_keep_last_0_keeps_the_newest_checkpoint_only(tmp_path):
    for update in (2, 4, 6):
        _complete(tmp_path, update)
    ckpt.prune_checkpoints(tmp_path, keep_last=0, save_every=2)
    assert [u for u, _ in ckpt.update_dirs(tmp_path)] == [6]


def test_an_incomplete_folder_of_the_same_update_is_replaced_by_the_whole_checkpoint(tmp_path):
    stale = tmp_path / ckpt.update_dir_name(4)
    stale.mkdir()
    (stale / "config.json").write_text("{}")

    def save_model(directory):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text('{"new": true}')

    target = ckpt.write_checkpoint(tmp_path, 4, save_model, {"update": 4})
    assert target == stale
    assert ckpt.load_trainer_state(target)["update"] == 4
    assert (target / "config.json").read_text() == '{"new": true}'
    assert torch.load(target / ckpt.TRAINER_FILE, weights_only=True) == {"update": 4}


def test_what_a_killed_run_left_half_written_is_cleared_and_complete_checkpoints_stay(tmp_path):
    root = tmp_path / "checkpoints"
    good = _complete(root, 4)
    leftovers = [root / ".tmp-update_0000008-123", root / ".update_0000008.tmp-abc", root / ".update_0000004.old-x"]
    for p in leftovers:
        p.mkdir(parents=True)
        (p / "model.safetensors").write_bytes(b"partial")
    (root / ".last.link-tmp").symlink_to("update_0000004")
    rewrite = good / f".{ckpt.TRAINER_FILE}.k3j2.tmp"  # a trainer.pt rewrite killed midway
    rewrite.write_bytes(b"partial")
    ckpt.clean_staging(root)
    assert sorted(p.name for p in root.iterdir()) == ["update_0000004"]
    assert [p.name for p in good.iterdir()] == [ckpt.TRAINER_FILE]
    assert ckpt.find_resume_dir(root) == good
