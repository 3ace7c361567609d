"""A corpus folder given where one manifest belongs (fine-tuning's --train/--dev) is named as a folder, with
manifests of it to give instead, not "no such manifest" for a path that exists."""

import pytest

from xlsr.data.index_cache import open_manifest
from xlsr.errors import ManifestError


def test_a_folder_is_named_with_its_manifests(tmp_path):
    for lang in ("es", "it", "sw"):
        (tmp_path / "synth" / lang).mkdir(parents=True)
        (tmp_path / "synth" / lang / "train.jsonl").write_text("")
    with pytest.raises(ManifestError) as exc:
        open_manifest(tmp_path / "synth")
    assert str(exc.value) == (f"{tmp_path / 'synth'}: a folder, not a manifest: give its JSONL files (e.g. "
                              f"{tmp_path / 'synth' / 'es' / 'train.jsonl'} {tmp_path / 'synth' / 'it' / 'train.jsonl'})")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"empty: a folder, not a manifest: give its JSONL files$"):
        open_manifest(tmp_path / "empty")
