"""The short probe's bookkeeping against hand values: held-out utterances never train the heads, the features are
standardized with the training part's statistics, the error rate is pooled over the held-out utterances (not an
average of theirs), each utterance keeps its own valid frames, and the slice is spread over every manifest."""

import numpy as np
import pytest
import soundfile as sf
import torch

import xlsr.train.probe_monitor as probe_monitor
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.text.vocab import Vocabulary
from xlsr.train.probe_monitor import ProbeSlice, encoder_views, read_probe_slice, run_probe, standardized

from .test_probe_monitor import HOP, TokenEncoder

CONV = [(8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 2, 2), (8, 2, 2)]


def _slice(refs: list[str], frames_per_phone: int = 3) -> ProbeSlice:
    vocab = Vocabulary.build(refs, kind="phones")
    ids = [vocab.encode(r) for r in refs]
    waves = [np.repeat(np.array(i, dtype=np.float32), frames_per_phone * HOP) for i in ids]
    return ProbeSlice(waves, ids, refs, vocab, "phones")


def _alternating(first: str, second: str, n: int) -> str:
    return " ".join(first if k % 2 == 0 else second for k in range(n))


def test_held_out_utterances_never_train_the_heads():
    # Training utterances say only a/b, held-out ones (every 5th) only c/d: a head that never saw c or d cannot
    # say them, so the held-out PER is 100%. Had the held-out utterances trained it, it would read them perfectly.
    refs = [_alternating("c", "d", 4 + i % 3) if i % 5 == 4 else _alternating("a", "b", 4 + i % 4)
            for i in range(25)]
    data = _slice(refs)
    assert [r for r, h in zip(refs, data.held_out) if h] == [refs[i] for i in (4, 9, 14, 19, 24)]
    logs = run_probe(TokenEncoder(len(data.vocab)), data, steps=100, seed=0, device=torch.device("cpu"))
    assert logs["probe_feature_per"] >= 0.95, logs

    # the same slice with c/d in training utterances too: the head reads the held-out ones (the probe can learn)
    mixed = [_alternating("c", "d", 4 + i % 3) if i % 2 else r for i, r in enumerate(refs)]
    data = _slice(mixed)
    assert run_probe(TokenEncoder(len(data.vocab)), data, steps=100, seed=0,
                     device=torch.device("cpu"))["probe_feature_per"] == 0.0


def test_standardized_with_the_training_utterances_statistics_only():
    train_a = torch.tensor([[0.0, 10.0], [4.0, 10.0]])  # channel 0: mean 2, std 2; channel 1: constant 10
    held = torch.tensor([[102.0, 5.0]])
    train_b = torch.tensor([[2.0, 10.0]])
    out = standardized([train_a, held, train_b], [True, False, True])
    # pooled training frames 0, 4, 2: mean 2, population std sqrt(8/3); the constant channel is only centred
    s = (8 / 3) ** 0.5
    torch.testing.assert_close(out[0], torch.tensor([[-2 / s, 0.0], [2 / s, 0.0]]))
    torch.testing.assert_close(out[1], torch.tensor([[100 / s, -5.0]]))
    torch.testing.assert_close(out[2], torch.tensor([[0.0, 0.0]]))


def test_held_out_frames_are_standardized_by_training_statistics_and_scored_pooled(monkeypatch):
    # Held out: utterances 4 (2 phones) and 9 (10 phones). Each transcribed as its first phone only:
    # 1 + 9 deletions of 12 phones = 10/12 pooled (not (1/2 + 9/10) / 2 = 0.7 averaged).
    lengths = [3, 4, 5, 6, 2, 7, 8, 3, 4, 10]
    refs = [_alternating("a", "b", n) for n in lengths]
    data = _slice(refs)
    seen = []

    def first_phone_only(head, frames, vocab, device):
        seen.append(frames)
        return ["a"] * len(frames)

    monkeypatch.setattr(probe_monitor, "transcribe", first_phone_only)
    logs = run_probe(TokenEncoder(len(data.vocab)), data, steps=2, seed=0, device=torch.device("cpu"))
    assert logs == {"probe_feature_per": pytest.approx(10 / 12), "probe_context_per": pytest.approx(10 / 12)}
    # the held-out utterances' own frames, in their order, standardized with the training utterances' statistics
    # (a: 22 of their 40 phones, b: 18; the held-out ones, 6 and 6, do not count)
    one_hot = [torch.nn.functional.one_hot(torch.tensor(i).repeat_interleave(3), len(data.vocab)).float()
               for i in data.label_ids]
    mean = torch.zeros(len(data.vocab))
    std = torch.ones(len(data.vocab))
    a, b = data.vocab.index("a"), data.vocab.index("b")
    mean[a], mean[b] = 22 / 40, 18 / 40
    std[a] = std[b] = (22 / 40 * 18 / 40) ** 0.5
    features, context = seen
    for got, i in zip(features, (4, 9)):
        torch.testing.assert_close(got, (one_hot[i] - mean) / std)
    assert [f.shape for f in context] == [(6, 4), (30, 4)]


def test_each_utterance_keeps_its_own_valid_frames():
    refs = ["a b a b a", "b", "a b a", "b a b a b a b a"]  # lengths out of order: batched by length
    data = _slice(refs, frames_per_phone=2)
    features, context = encoder_views(TokenEncoder(len(data.vocab)), data.waveforms, torch.device("cpu"))
    for ids, f, c in zip(data.label_ids, features, context):
        expected = torch.nn.functional.one_hot(torch.tensor(ids).repeat_interleave(2), len(data.vocab)).float()
        torch.testing.assert_close(f, expected)  # no padding frames, and this utterance's, not a neighbour's
        assert c.shape == (2 * len(ids), 4)


def _wav(path, seconds: float, amplitude: float):
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return str(path)


def test_the_slice_is_spread_over_every_manifest_and_normalized_as_asked(tmp_path):
    paths = []
    for lang, phones in (("aa", "a b"), ("bb", "c d")):
        utts = [Utterance(id=f"{lang}{i}", audio=_wav(tmp_path / f"{lang}{i}.wav", 0.5, 0.1), num_samples=8000,
                          lang=lang, speaker="s", phones=phones) for i in range(10)]
        paths.append(tmp_path / f"{lang}.jsonl")
        write_manifest(paths[-1], utts)
    data = read_probe_slice([str(p) for p in paths], "phones", conv_layers=CONV, normalize=True, max_utterances=6)
    assert data.refs == ["a b"] * 3 + ["c d"] * 3  # 0, 4, 8 of 20 from the first; 11, 15, 19 from the second
    for wave in data.waveforms:  # zero mean, unit variance, as the run's own audio
        assert abs(float(wave.mean())) < 1e-3 and float(wave.std()) == pytest.approx(1.0, abs=1e-3)
    raw = read_probe_slice([str(paths[0])], "phones", conv_layers=CONV, normalize=False, max_utterances=6)
    assert float(raw.waveforms[0].std()) == pytest.approx(0.1 / 2**0.5, rel=1e-2)
    five = tmp_path / "five.jsonl"  # the least the probe needs: four to train, one to score
    write_manifest(five, [Utterance(id=f"f{i}", audio=_wav(tmp_path / f"f{i}.wav", 0.5, 0.1), num_samples=8000,
                                    lang="aa", speaker="s", phones="a b") for i in range(5)])
    assert read_probe_slice([str(five)], "phones", conv_layers=CONV, normalize=False).held_out == [False] * 4 + [True]
