"""The short linear probe of pretraining: a head learns separable features, the slice's bad input is one line."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from xlsr.data.manifest import Utterance, write_manifest
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary
from xlsr.train.probe_monitor import ProbeSlice, read_probe_slice, run_probe

HOP = 320  # samples per frame of the fake encoder, as the real CNN's 20 ms


class TokenEncoder(nn.Module):
    """Frame t of a waveform holds a token id (constant over its HOP samples): one-hot features, constant context."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, waveforms, lengths):
        T = waveforms.shape[1] // HOP
        ids = waveforms[:, : T * HOP].reshape(len(waveforms), T, HOP)[..., 0].round().long()
        features = nn.functional.one_hot(ids, self.vocab_size).float()
        return SimpleNamespace(extract_features=features, last_hidden_state=torch.ones(len(waveforms), T, 4),
                               frame_lengths=lengths // HOP)


def _token_slice(n=25, seed=0) -> ProbeSlice:
    rng = np.random.default_rng(seed)
    refs = []
    for _ in range(n):
        phones = [str(rng.choice(list("abcd")))]
        while len(phones) < rng.integers(5, 10):
            phones.append(str(rng.choice([p for p in "abcd" if p != phones[-1]])))  # no repeats: no blank needed
        refs.append(" ".join(phones))
    vocab = Vocabulary.build(refs, kind="phones")
    ids = [vocab.encode(r) for r in refs]
    waves = [np.repeat(np.array(i, dtype=np.float32), 3 * HOP) for i in ids]  # each phone held for 3 frames
    return ProbeSlice(waves, ids, refs, vocab, "phones")


def test_a_linear_head_reads_separable_features_and_not_constant_ones():
    data = _token_slice()
    logs = run_probe(TokenEncoder(len(data.vocab)), data, steps=100, seed=0, device=torch.device("cpu"))
    assert set(logs) == {"probe_feature_per", "probe_context_per"}
    assert logs["probe_feature_per"] == 0.0
    assert logs["probe_context_per"] >= 0.6  # one output for every frame: at best one phone per utterance
    again = run_probe(TokenEncoder(len(data.vocab)), data, steps=100, seed=0, device=torch.device("cpu"))
    assert again == logs


def _manifest(path, utts):
    write_manifest(path, utts)
    return str(path)


def test_probe_slice_is_spread_over_the_manifests_and_bad_input_is_one_line(tmp_path):
    conv = [(8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 2, 2), (8, 2, 2)]
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    utt = dict(audio=str(wav), num_samples=16000, lang="xx", speaker="s")
    labeled = [Utterance(**utt, phones="a b" if i % 2 else "b c", id=f"u{i}") for i in range(30)]
    path = _manifest(tmp_path / "labeled.jsonl", labeled)
    data = read_probe_slice([path], "phones", conv_layers=conv, normalize=False, max_utterances=12)
    assert len(data.waveforms) == 12 and sum(data.held_out) == 2
    assert data.vocab.tokens[-3:] == ["a", "b", "c"] and data.refs[0] == "b c" and data.refs[-1] == "a b"

    unlabeled = _manifest(tmp_path / "unlabeled.jsonl", [Utterance(**utt, text="words", id="x")])
    with pytest.raises(XlsrError, match=r"probe_data .*unlabeled.jsonl: no utterance has a 'phones' label") as e:
        read_probe_slice([path, unlabeled], "phones", conv_layers=conv, normalize=False)
    assert "\n" not in str(e.value)
    with pytest.raises(XlsrError, match="'text'"):
        read_probe_slice([path], "chars", conv_layers=conv, normalize=False)
    few = _manifest(tmp_path / "few.jsonl", labeled[:3])
    with pytest.raises(XlsrError, match="3 usable 'phones'-labeled utterances; the probe needs at least 5"):
        read_probe_slice([few], "phones", conv_layers=conv, normalize=False)
