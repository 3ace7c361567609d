"""Manifests without a single reference label are refused in one line that names them and the field."""

from types import SimpleNamespace

import pytest

from xlsr.data.manifest import Utterance, write_manifest
from xlsr.decode.evaluate import References, read_manifests
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary


def test_manifests_without_a_reference_are_named(tmp_path):
    paths = []
    for lang in ("es", "fr"):
        path = tmp_path / lang / "test.jsonl"
        write_manifest(path, [Utterance(str(tmp_path / lang / "a.wav"), 16000, lang, phones="a b", id=f"{lang}-a")])
        paths.append(path)
    model = SimpleNamespace(vocab=Vocabulary(["<blank>", "<unk>", "|", "a", "b"], kind="chars"), source="model")
    with pytest.raises(XlsrError) as caught:
        References.of(model, read_manifests(paths), None, False)
    assert str(caught.value) == f"{paths[0]}, {paths[1]}: no utterance has a 'text' reference (--labels chars)"
