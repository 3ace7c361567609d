"""A folder given where one manifest belongs is said to be a folder, with manifests of it to give instead, by every
reader of one manifest (one helper, data.manifest.check_manifest_file), not "no such manifest" for a path that
exists: the probe's --train/--test, evaluate's --manifest, data check's --manifest."""

import pytest

from xlsr.cli.main import main
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import read_manifest
from xlsr.errors import ManifestError


def _language_folder(root):
    """A language folder: es/train.jsonl and es/dev.jsonl (what `--train` should have named)."""
    folder = root / "corpus" / "es"
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        (folder / f"{split}.jsonl").write_text("")
    return folder


def test_read_manifest_names_a_folder_and_its_manifests(tmp_path):
    folder = _language_folder(tmp_path)
    with pytest.raises(ManifestError) as exc:
        read_manifest(folder)
    assert str(exc.value) == (f"{folder}: a folder, not a manifest: give its JSONL files (e.g. {folder / 'dev.jsonl'} "
                              f"{folder / 'train.jsonl'})")
    with pytest.raises(ManifestError, match=r"corpus: a folder, not a manifest: give its JSONL files \(e.g. .*dev"):
        read_manifest(folder.parent)  # the corpus folder: its languages' manifests
    with pytest.raises(ManifestError, match=r"nothing.jsonl: no such manifest$"):
        read_manifest(tmp_path / "nothing.jsonl")


def test_open_manifest_names_the_manifests_of_a_language_folder(tmp_path):
    folder = _language_folder(tmp_path)
    with pytest.raises(ManifestError) as exc:
        open_manifest(folder)
    assert str(exc.value) == (f"{folder}: a folder, not a manifest: give its JSONL files (e.g. {folder / 'dev.jsonl'} "
                              f"{folder / 'train.jsonl'})")


def _one_line(capsys, argv, folder):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (f"xlsr: error: {folder}: a folder, not a manifest: give its JSONL files (e.g. "
                   f"{folder / 'dev.jsonl'} {folder / 'train.jsonl'})\n")


def test_probe_says_its_train_manifest_is_a_folder(tmp_path, capsys):
    folder = _language_folder(tmp_path)
    # said before any checkpoint is read: the model path need not exist
    _one_line(capsys, ["probe", "--model", str(tmp_path / "no-model"), "--train", str(folder), "--test",
                       str(folder / "dev.jsonl"), "--out", str(tmp_path / "out")], folder)


def test_data_check_says_its_manifest_is_a_folder(tmp_path, capsys):
    folder = _language_folder(tmp_path)
    _one_line(capsys, ["data", "check", "--manifest", str(folder), "--out", str(tmp_path / "report.jsonl")], folder)
