"""`xlsr synth --out DIR` writes only into a folder of its own: manifests it did not write (no synth.json, or a
language synth.json does not list) are refused in one line before any audio is rendered; adding languages to its
own folder, and rerunning a call stopped before it wrote synth.json, go on as before."""

import json

import pytest

from xlsr.cli.main import main
from xlsr.data.manifest import read_manifest
from xlsr.data.synth import corpus as synth_corpus
from xlsr.data.synth import synthesize_corpus
from xlsr.errors import XlsrError

KW = dict(speakers_per_lang=3, words_per_utt=(1, 2), augment="none", show_progress=False)


def test_a_language_whose_manifests_synth_did_not_write_is_refused_the_others_go_on(tmp_path, capsys):
    mine = tmp_path / "userdir" / "es" / "train.jsonl"
    mine.parent.mkdir(parents=True)
    mine.write_text('{"mine":1}\n')
    capsys.readouterr()
    assert main(["synth", "--out", str(tmp_path / "userdir"), "--langs", "es", "--utts-per-lang", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"xlsr: error: --out {tmp_path / 'userdir'}: es/train.jsonl is not a manifest xlsr synth wrote (the "
                   f"folder has no synth.json), and synthesizing es would overwrite it; synthesize into another "
                   f"folder, or leave es out")
    assert mine.read_text() == '{"mine":1}\n'
    assert sorted(p.name for p in mine.parent.iterdir()) == ["train.jsonl"]  # no audio rendered either
    synthesize_corpus(tmp_path / "userdir", ["it"], 3, **KW)  # a language of its own beside the user's
    assert mine.read_text() == '{"mine":1}\n' and (tmp_path / "userdir" / "it" / "train.jsonl").is_file()


def test_a_language_an_import_wrote_since_is_refused_though_synth_json_lists_it(tmp_path):
    out = tmp_path / "corpus"
    synthesize_corpus(out, ["it"], 3, **KW)
    for split in ("train", "dev", "test"):  # the user moved synth's it away, and an import wrote its own
        (out / "it" / f"{split}.jsonl").write_text('{"imported":1}\n')
    (out / "import.json").write_text(json.dumps({"written_by": "xlsr data import", "manifests": [
        "it/dev.jsonl", "it/test.jsonl", "it/train.jsonl"]}))
    with pytest.raises(XlsrError, match=r"it/dev.jsonl is a manifest an import wrote \(.*import.json lists it\), and "
                                        r"synthesizing it would overwrite it"):
        synthesize_corpus(out, ["it"], 3, **KW)
    assert (out / "it" / "train.jsonl").read_text() == '{"imported":1}\n'


def test_languages_are_added_to_its_own_folder_but_not_over_another_tools_manifests(tmp_path):
    out = tmp_path / "corpus"
    synthesize_corpus(out, ["it"], 3, **KW)
    synthesize_corpus(out, ["es"], 3, **KW)  # another language into its own folder
    synthesize_corpus(out, ["it"], 4, **KW)  # a language of its own written again
    assert sum(len(read_manifest(out / "it" / f"{s}.jsonl")) for s in ("train", "dev", "test")) == 4
    assert list(json.loads((out / "synth.json").read_text())["languages"]) == ["es", "it"]

    theirs = out / "fr" / "train.jsonl"  # e.g. an import's, beside synth's languages
    theirs.parent.mkdir()
    theirs.write_text('{"mine":1}\n')
    with pytest.raises(XlsrError, match=r"fr/train.jsonl is not a manifest xlsr synth wrote \(synth.json does not "
                                        r"list fr\), and synthesizing fr would overwrite it") as exc:
        synthesize_corpus(out, ["fr", "de"], 3, **KW)
    assert "\n" not in str(exc.value) and theirs.read_text() == '{"mine":1}\n' and not (out / "de").exists()
    synthesize_corpus(out, ["de"], 3, **KW)  # the other languages stay open to it


def test_a_call_stopped_before_it_wrote_synth_json_can_be_run_again(tmp_path, monkeypatch):
    out = tmp_path / "corpus"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth_corpus, "folder_record", stopped)  # after the manifests, before synth.json
    with pytest.raises(KeyboardInterrupt):
        synthesize_corpus(out, ["it"], 3, **KW)
    monkeypatch.undo()
    assert (out / "it" / "train.jsonl").is_file() and not (out / "synth.json").exists()
    synthesize_corpus(out, ["it"], 3, **KW)
    assert list(json.loads((out / "synth.json").read_text())["languages"]) == ["it"]
    assert not (out / synth_corpus.PENDING).exists()


def test_a_rerun_with_fewer_utterances_removes_its_own_stale_audio_and_nothing_else(tmp_path):
    out = tmp_path / "corpus"
    synthesize_corpus(out, ["it", "es"], 10, **KW)
    audio = out / "it" / "audio"
    (audio / "mine.flac").write_bytes(b"user's")  # not a name synth gives its files
    (audio / "es-train-00009.flac").write_bytes(b"another language's name")
    es_before = sorted(p.name for p in (out / "es" / "audio").iterdir())
    synthesize_corpus(out, ["it"], 5, **KW)
    listed = {utt.audio for s in ("train", "dev", "test") for utt in read_manifest(out / "it" / f"{s}.jsonl")}
    assert len(listed) == 5
    assert {str(p) for p in audio.glob("it-*.flac")} == listed
    assert (audio / "mine.flac").read_bytes() == b"user's"
    assert (audio / "es-train-00009.flac").read_bytes() == b"another language's name"
    assert sorted(p.name for p in (out / "es" / "audio").iterdir()) == es_before  # a language not synthesized again
