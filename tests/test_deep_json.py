"""JSON nested deeper than Python's parser goes (a damaged file: `[[[[...`) is malformed JSON wherever xlsr reads
JSON a user hands it: one line naming the file (a manifest's line: skipped and counted as a bad line), never a
RecursionError's traceback (jsonl.parse_json)."""

import json

import pytest

from xlsr.data.index_cache import open_manifest
from xlsr.data.shard_index import read_index
from xlsr.errors import XlsrError
from xlsr.jsonl import json_object, parse_json
from xlsr.model.config import Wav2Vec2Config
from xlsr.text.vocab import Vocabulary

DEEP = "[" * 200_000


def test_parse_json_raises_the_malformed_json_error():
    with pytest.raises(json.JSONDecodeError, match="^nested too deeply"):
        parse_json(DEEP)
    with pytest.raises(ValueError, match="^nested too deeply"):
        parse_json(DEEP.encode())
    assert parse_json('{"a": [1, [2]]}') == {"a": [1, [2]]}
    assert json_object(DEEP) == {}


def test_a_manifest_line_nested_too_deeply_is_a_bad_line_skipped(tmp_path):
    lines = [json.dumps({"audio": f"a{i}.wav", "num_samples": 16000, "lang": "es", "id": f"u{i}"}) for i in range(30)]
    manifest = tmp_path / "es" / "train.jsonl"
    manifest.parent.mkdir()
    manifest.write_text("\n".join(lines[:10] + [DEEP] + lines[10:]) + "\n")
    index = open_manifest(manifest, max_bad_share=0.05)
    assert len(index.tables[0]) == 30 and index.tables[0].meta["bad"] == 1
    bad = (manifest.parent / ".train.jsonl.index" / "bad_lines.txt").read_text()
    assert f"{manifest}:11: not valid JSON (nested too deeply)" in bad


@pytest.mark.parametrize("name, read, words", [
    ("index.json", lambda p: read_index(p.parent), "not a valid JSON index (nested too deeply)"),
    ("vocab.json", Vocabulary.from_json, "not a JSON vocabulary (nested too deeply"),
    ("config.json", Wav2Vec2Config.from_json, "cannot read a Wav2Vec2Config JSON (nested too deeply"),
])
def test_a_json_file_nested_too_deeply_is_one_line_naming_it(tmp_path, name, read, words):
    path = tmp_path / name
    path.write_text(DEEP)
    with pytest.raises(XlsrError) as caught:
        read(path)
    assert str(caught.value).startswith(f"{path}: {words}") and "\n" not in str(caught.value)
