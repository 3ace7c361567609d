"""Manifest lines at their edges: an empty utterance or a boolean length is a bad line (the utterance index skips it
as the reader refuses it), and an empty transcript stays an empty transcript, not a missing one."""

import json

import pytest

from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import Utterance, read_manifest, write_manifest
from xlsr.errors import ManifestError


@pytest.mark.parametrize("value", [0, True, 1.5, "16000"])
def test_a_length_that_is_not_a_positive_integer_is_a_bad_line(tmp_path, value):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "ok.wav", "num_samples": 3, "lang": "es"}\n'
                    + json.dumps({"audio": "b.wav", "num_samples": value, "lang": "es"}) + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:2: num_samples must be a positive integer"):
        read_manifest(path)
    index = open_manifest(path, max_bad_share=0.5)  # skipped under the cap, never read as an utterance
    assert [u.audio.endswith("ok.wav") for u in index] == [True]


def test_an_empty_transcript_is_written_and_read_back_as_empty(tmp_path):
    utts = [Utterance(audio="/a/silence.wav", num_samples=800, lang="es", text="", phones="", id="silence"),
            Utterance(audio="/a/unlabelled.wav", num_samples=800, lang="es", id="unlabelled")]
    path = tmp_path / "es" / "train.jsonl"
    write_manifest(path, utts)
    assert read_manifest(path) == [Utterance(audio="/a/silence.wav", num_samples=800, lang="es", text="", phones="",
                                             id="silence", speaker="unknown"),
                                   Utterance(audio="/a/unlabelled.wav", num_samples=800, lang="es", id="unlabelled",
                                             speaker="unknown")]
    assert [(u.text, u.phones) for u in open_manifest(path)] == [("", ""), (None, None)]
