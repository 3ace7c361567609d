import json

import pytest

from xlsr.data.manifest import Utterance, find_manifests, read_manifest, read_split, write_manifest
from xlsr.errors import ManifestError


def test_roundtrip_with_relative_audio(tmp_path):
    audio = tmp_path / "es" / "audio" / "u1.flac"
    utts = [Utterance(audio=str(audio), num_samples=16000, lang="es", speaker="s1", text="hola", phones="o l a",
                      id="u1"),
            Utterance(audio="/elsewhere/u2.wav", num_samples=5, lang="es")]
    write_manifest(tmp_path / "es" / "train.jsonl", utts)
    lines = [json.loads(line) for line in (tmp_path / "es" / "train.jsonl").read_text().splitlines()]
    assert lines[0]["audio"] == "audio/u1.flac" and lines[1]["audio"] == "/elsewhere/u2.wav"
    assert "text" not in lines[1]
    back = read_manifest(tmp_path / "es" / "train.jsonl")
    assert back[0] == utts[0]
    assert back[1].id == "u2" and back[1].speaker == "unknown"
    assert list(find_manifests(tmp_path, "train")) == ["es"]
    assert len(read_split(tmp_path, "train", ["es"])) == 2
    with pytest.raises(ManifestError, match="language\\(s\\) xx"):
        read_split(tmp_path, "train", ["xx"])


@pytest.mark.parametrize("line,problem", [
    ('{"audio": "a.wav", "lang": "es"}', "missing field\\(s\\) num_samples"),
    ('{"audio": "a.wav", "num_samples": -3, "lang": "es"}', "num_samples must be a positive integer"),
    ('{"audio": "a.wav", "num_samples": 3, "lang": ""}', "lang must be a non-empty string"),
    ('{"audio": "a.wav", "num_samples": 3, "lang": "es", "text": 5}', "text must be a string"),
    ("not json", "not valid JSON \\(Expecting value\\)$"),
    ('{"id": "x', "not valid JSON \\(Unterminated string starting at column 8\\)$"),  # where, as json's words ask
    ('{"id": "a\tb"}', "not valid JSON \\(Invalid control character at column 10\\)$"),
    ("[1, 2]", "expected a JSON object"),
])
def test_bad_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "ok.wav", "num_samples": 3, "lang": "es"}\n' + line + "\n")
    with pytest.raises(ManifestError, match=f"m.jsonl:2: {problem}"):
        read_manifest(path)


def test_missing_manifest_and_folder(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="no manifests"):
        find_manifests(tmp_path, "train")


def test_binary_file_as_manifest_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"audio": "a.flac", "num_samples": 16000, "lang": "es"}\n\x80\x04\x95\xff binary\n')
    with pytest.raises(ManifestError, match=r"train.jsonl:2: not UTF-8 text"):
        read_manifest(path)
