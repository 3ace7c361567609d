"""normalize-text's copy of a corpus: audio kept beside the original manifests stays reachable from the copy."""

import json

from xlsr.data.manifest import Utterance, read_manifest, write_manifest
from xlsr.data.normalize_corpus import normalize_corpus


def test_audio_under_the_manifest_folder_is_found_from_the_copy(tmp_path):
    data = tmp_path / "data"
    clips = data / "it" / "clips"
    clips.mkdir(parents=True)
    audio = clips / "a.wav"
    audio.write_bytes(b"")
    write_manifest(data / "it" / "train.jsonl", [Utterance(str(audio), 16000, "it", text="Ciao!", id="u1")])
    assert json.loads((data / "it" / "train.jsonl").read_text())["audio"] == "clips/a.wav"  # relative in DIR

    out = tmp_path / "norm"
    normalize_corpus(data, out)
    (utt,) = read_manifest(out / "it" / "train.jsonl")
    assert utt.audio == str(audio.resolve()) and utt.text == "ciao"  # the original file, not OUT/it/clips/a.wav
    assert json.loads((out / "it" / "train.jsonl").read_text())["audio"] == audio.resolve().as_posix()


def test_audio_under_the_copy_folder_is_written_relative_to_it(tmp_path):
    data = tmp_path / "data"
    (data / "it").mkdir(parents=True)
    out = tmp_path / "norm"
    (out / "it" / "clips").mkdir(parents=True)
    audio = out / "it" / "clips" / "b.wav"
    audio.write_bytes(b"")
    write_manifest(data / "it" / "dev.jsonl", [Utterance(str(audio), 8000, "it", text="Sì", id="u2")])

    normalize_corpus(data, out)
    assert json.loads((out / "it" / "dev.jsonl").read_text())["audio"] == "clips/b.wav"
    (utt,) = read_manifest(out / "it" / "dev.jsonl")
    assert utt.audio == str(audio.resolve()) and utt.text == "sì"
