"""`analyze` over hours of audio holds minutes of it: clips are read, quantized, counted and dropped a part at a time."""

import weakref

import numpy as np
import soundfile as sf
import torch

import xlsr.analysis.extract as extract
from xlsr.analysis import analyze
from xlsr.analysis import codebook as cb
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

SR = 16000


def _corpus(root, langs, utterances, samples):
    for seed, lang in enumerate(langs):
        rng = np.random.default_rng(seed)
        folder = root / lang
        folder.mkdir(parents=True)
        utts = []
        for i in range(utterances):
            t = np.arange(samples) / SR
            x = 0.3 * np.sin(2 * np.pi * (150 + 200 * seed) * t) + 0.1 * rng.standard_normal(samples)
            sf.write(folder / f"{i}.wav", x.astype(np.float32), SR)
            utts.append(Utterance(audio=str(folder / f"{i}.wav"), num_samples=samples, lang=lang, id=f"{lang}{i}"))
        write_manifest(folder / "train.jsonl", utts)


def _model(path):
    torch.manual_seed(0)
    config = Wav2Vec2Config(conv_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2, hidden_size=32,
                            num_layers=1, num_heads=2, ffn_dim=64, final_dim=16, codevector_dim=16,
                            num_codevector_groups=2, num_codevectors_per_group=8, conv_pos=16, conv_pos_groups=4)
    save_checkpoint(path, Wav2Vec2ForPreTraining(config))
    return path


def test_the_audio_read_is_dropped_once_counted_and_the_counts_are_those_of_one_pass(tmp_path, monkeypatch):
    _corpus(tmp_path / "data", ["aa", "bb"], utterances=16, samples=8000)
    ckpt = _model(tmp_path / "pretrained")
    kw = dict(seconds_per_lang=6.0, plots=False, show_progress=False)
    whole = analyze(ckpt, tmp_path / "data", tmp_path / "whole", **kw)  # 6 s a language: one part

    held, alive, read_clip = [], [], extract.read_clip

    def read_and_watch(clip, **options):
        held.append(sum(a.size for a in (ref() for ref in alive) if a is not None))  # audio still held as it reads
        clip = read_clip(clip, **options)
        alive.append(weakref.ref(clip.audio))
        return clip

    monkeypatch.setattr(extract, "read_clip", read_and_watch)
    monkeypatch.setattr(extract, "READ_AHEAD_SAMPLES", SR, raising=False)  # parts of 1 s
    parts = analyze(ckpt, tmp_path / "data", tmp_path / "parts", **kw)
    assert len(held) == 24
    assert max(held) <= SR + 8000  # a part, and the clip that completed it: not all 12 s read
    assert parts.counts.langs == whole.counts.langs == ["aa", "bb"]
    np.testing.assert_array_equal(parts.counts.codewords, whole.counts.codewords)
    np.testing.assert_array_equal(parts.counts.counts, whole.counts.counts)
    assert parts.counts.counts.sum() > 500 and parts.summary["per_language"] == whole.summary["per_language"]


def test_tallies_added_part_by_part_are_the_count_of_all_the_ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=3000) ** 2  # sparse ids, some parts missing some of them
    tally = cb.tally_codewords(np.zeros(0, dtype=np.int64))
    for part in np.array_split(ids, 7):
        tally = cb.tally_codewords(part, tally)
    used, counts = np.unique(ids, return_counts=True)
    np.testing.assert_array_equal(tally[0], used)
    np.testing.assert_array_equal(tally[1], counts)
    both = cb.counts_from_tallies({"x": tally, "y": cb.tally_codewords(ids[:10])}, num_codewords=2500)
    want = cb.count_codewords({"x": ids, "y": ids[:10]}, num_codewords=2500)
    np.testing.assert_array_equal(both.codewords, want.codewords)
    np.testing.assert_array_equal(both.counts, want.counts)
