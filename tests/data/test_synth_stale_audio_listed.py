"""A language synthesized again with fewer utterances keeps the earlier call's audio that a manifest in the corpus
folder still names: a user's subset beside synth's manifests, normalized manifests in a folder inside it."""

from xlsr.data.synth import synthesize_corpus

KW = dict(speakers_per_lang=3, words_per_utt=(1, 2), augment="none", show_progress=False)


def test_audio_another_manifest_in_the_folder_names_is_kept(tmp_path):
    out = tmp_path / "corpus"
    synthesize_corpus(out, ["it"], 10, **KW)
    lines = (out / "it" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert '"audio/it-train-00007.flac"' in lines[7] and '"audio/it-train-00006.flac"' in lines[6]
    (out / "it" / "subset.jsonl").write_text(lines[7] + "\n", encoding="utf-8")
    normalized = out / "normalized" / "it" / "train.jsonl"
    normalized.parent.mkdir(parents=True)
    normalized.write_text(lines[6].replace('"audio/', f'"{out}/it/audio/') + "\n", encoding="utf-8")
    synthesize_corpus(out, ["it"], 5, **KW)  # 3 train utterances now
    audio = out / "it" / "audio"
    assert sorted(p.name for p in audio.glob("it-train-*.flac")) == [
        "it-train-00000.flac", "it-train-00001.flac", "it-train-00002.flac", "it-train-00006.flac",
        "it-train-00007.flac"]
