"""A manifest path that exists but is no regular file (a pipe, as `--manifest <(...)` gives) is said to be that, not
"no such manifest", by every reader of one manifest; a path that does not exist is still "no such manifest"."""

import os

import pytest

from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import read_records
from xlsr.errors import ManifestError

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


@pytest.mark.parametrize("read", [read_records, open_manifest])
def test_a_pipe_is_not_said_to_be_missing(tmp_path, read):
    pipe = tmp_path / "train.jsonl"
    os.mkfifo(pipe)
    with pytest.raises(ManifestError) as exc:
        read(pipe)  # refused before it is opened: nothing waits for a writer
    assert str(exc.value) == f"{pipe}: not a regular file (a pipe or a device); give the manifest file itself"
    with pytest.raises(ManifestError) as exc:
        read(tmp_path / "nothing.jsonl")
    assert str(exc.value) == f"{tmp_path / 'nothing.jsonl'}: no such manifest"
