"""An import replaces only manifests an import wrote (DIR/import.json lists them): a synthesized corpus's manifest, or
a user's, is refused in one line naming it, before anything is written."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from _reimport_kills import import_audio

from xlsr.cli.main import main
from xlsr.data.import_writer import MARK, ImportRefused
from xlsr.data.importers import import_fairseq
from xlsr.data.manifest import read_manifest


def _fairseq(tmp_path, count: int = 2):
    """A fairseq train.tsv of `count` 0.5 s files (an import that lists them where they lie)."""
    audio = tmp_path / "wavs"
    audio.mkdir(exist_ok=True)
    for i in range(count):
        sf.write(audio / f"u{i}.wav", np.zeros(8000, np.float32), 16000)
    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"{audio}\n" + "".join(f"u{i}.wav\t8000\n" for i in range(count)))
    return tsv


def test_an_import_into_a_synthesized_corpus_leaves_its_manifests(corpus, tmp_path, capsys):
    synth, _ = corpus
    out = tmp_path / "corpus"
    shutil.copytree(synth, out)
    before = {p: p.read_bytes() for p in sorted(out.rglob("*.jsonl"))}
    capsys.readouterr()
    assert main(["data", "import", "fairseq", str(_fairseq(tmp_path)), "--out", str(out), "--lang", "es"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"xlsr: error: {out / 'es' / 'train.jsonl'}: a manifest no import wrote ({out / MARK} does not "
                   f"list it: xlsr synth's, your own, or an import's by an xlsr before 2026-12-07), which importing "
                   f"es/train would replace; move it elsewhere, or import into another --out")
    assert {p: p.read_bytes() for p in sorted(out.rglob("*.jsonl"))} == before
    assert not (out / MARK).exists() and not list(out.rglob(".*importing"))

    # another language goes in beside them, and its own re-import replaces it as before
    assert import_fairseq(_fairseq(tmp_path, 2), out, lang="fr").counts == {("fr", "train"): 2}
    assert import_fairseq(_fairseq(tmp_path, 1), out, lang="fr").counts == {("fr", "train"): 1}
    assert len(read_manifest(out / "fr" / "train.jsonl")) == 1
    assert json.loads((out / MARK).read_text())["manifests"] == ["fr/train.jsonl"]
    assert {p: p.read_bytes() for p in before} == before


def test_an_import_writing_audio_is_refused_at_its_first_file(tmp_path):
    manifest = tmp_path / "en" / "train.jsonl"
    manifest.parent.mkdir()
    manifest.write_text('{"mine": 1}\n')
    with pytest.raises(ImportRefused, match=r"en/train.jsonl: a manifest no import wrote") as exc:
        import_audio(tmp_path)
    assert "\n" not in str(exc.value)
    assert manifest.read_text() == '{"mine": 1}\n'
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["en", "en/train.jsonl"]


def test_a_manifest_an_import_wrote_is_replaced_and_stays_listed(tmp_path):
    import_audio(tmp_path, 3)
    import_audio(tmp_path, 2, split="dev")
    assert json.loads((tmp_path / MARK).read_text())["manifests"] == ["en/dev.jsonl", "en/train.jsonl"]
    import_audio(tmp_path, 1)
    assert len(read_manifest(tmp_path / "en" / "train.jsonl")) == 1
    # a listed manifest the user removed, then put back by hand, is theirs: no longer listed after the next import
    (tmp_path / "en" / "dev.jsonl").unlink()
    import_audio(tmp_path, 2)
    assert json.loads((tmp_path / MARK).read_text())["manifests"] == ["en/train.jsonl"]
    (tmp_path / "en" / "dev.jsonl").write_text('{"mine": 1}\n')
    with pytest.raises(ImportRefused, match=r"en/dev.jsonl: a manifest no import wrote"):
        import_audio(tmp_path, 1, split="dev")


def test_a_users_import_json_is_refused_not_overwritten(tmp_path):
    (tmp_path / MARK).write_text('{"my": "settings"}\n')
    with pytest.raises(ImportRefused, match=r"import.json: not the list of imported manifests xlsr keeps there") as exc:
        import_audio(tmp_path)
    assert "\n" not in str(exc.value) and (tmp_path / MARK).read_text() == '{"my": "settings"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARK]
