"""A fairseq or Common Voice .tsv (or a .csv) given where a JSONL manifest belongs is named as a table with the
command that makes a manifest of it, instead of "line 1: not valid JSON" for every line."""

import pytest

from xlsr.data.index_cache import open_manifest
from xlsr.errors import ManifestError


@pytest.mark.parametrize("text", ["/data/clips\nrec/a.wav\t16000\n", "\ufeffpath\tsentence\nrec/a.wav\tabc\n",
                                  "audio,num_samples,lang\na.wav,16000,en\n"])
def test_a_table_is_named_as_one(tmp_path, text):
    path = tmp_path / "train.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as exc:
        open_manifest(path)
    assert str(exc.value) == (f"{path}: a table (tab- or comma-separated), not a JSONL manifest (one JSON object per "
                              "line); make one with `xlsr data import fairseq|commonvoice|folder` (docs/importing.md)")
    assert not list(tmp_path.glob(".*index*"))  # refused before an index of its "lines" is built
