"""The dev error rate fine-tuning selects `best` by: every edit (insertions too) over the reference's symbols, word
boundaries left out of both sides."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from xlsr.train.finetune import FinetuneConfig, FinetuneTask

from ._tones import write_tone_corpus
from .test_finetune import SMALL


class _FixedPaths(nn.Module):
    """A 'model' whose greedy CTC path is given: one token id per frame for each row."""

    def __init__(self, paths, vocab_size):
        super().__init__()
        self.paths, self.vocab_size = paths, vocab_size

    def forward(self, waveforms, lengths, labels=None, label_lengths=None):
        frames = max(map(len, self.paths))
        logits = torch.zeros(len(self.paths), frames, self.vocab_size)
        for row, path in enumerate(self.paths):
            logits[row, torch.arange(len(path)), torch.tensor(path)] = 10.0
        return SimpleNamespace(logits=logits, frame_lengths=torch.tensor([len(p) for p in self.paths]),
                               loss=torch.tensor(0.0))


def test_the_dev_cer_counts_insertions_and_leaves_word_boundaries_out(tmp_path):
    manifest = write_tone_corpus(tmp_path, "train", 4, seed=1)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    for r in lines:
        r["text"] = " ".join(r["phones"].split())  # words of one tone: the vocabulary gets `|`
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines))
    task = FinetuneTask(FinetuneConfig(train=[str(manifest)], out=str(tmp_path / "run"), labels="chars",
                                       model=SMALL, cache_features=False))
    vocab = task.vocab
    a, i, u, bar = (vocab.index(t) for t in ("a", "i", "u", "|"))
    blank = 0
    assert len({a, i, u, bar, vocab.unk_id, blank}) == 6  # every one in the vocabulary
    assert task.boundary_id == bar and task.best_metric == "cer"
    ref = [a, bar, i]  # "a i"
    batch = SimpleNamespace(waveforms=torch.zeros(2, 400), lengths=torch.tensor([400, 400]), ids=[0, 1],
                            labels=torch.tensor([ref, ref]), label_lengths=torch.tensor([3, 3]))
    # row 0 says "ai" (the boundary missed: no error); row 1 says "aui" (one insertion)
    model = _FixedPaths([[a, blank, i], [a, blank, u, blank, i]], len(vocab.tokens))
    logs = task.valid_step(model, batch)
    assert logs["cer"] == pytest.approx(1 / 4) and logs["sample_size"] == 4


def test_a_reference_symbol_outside_the_vocabulary_is_an_error_even_where_the_model_says_unk(tmp_path):
    # as xlsr evaluate scores it: the reference's own symbol against the hypothesis' `<unk>` is a substitution
    manifest = write_tone_corpus(tmp_path, "train", 4, seed=1)
    task = FinetuneTask(FinetuneConfig(train=[str(manifest)], out=str(tmp_path / "run"), model=SMALL,
                                       cache_features=False))
    vocab = task.vocab
    a, i, unk, blank = vocab.index("a"), vocab.index("i"), vocab.unk_id, 0
    ref = [a, unk, i]  # a dev label whose middle symbol the vocabulary lacks
    batch = SimpleNamespace(waveforms=torch.zeros(2, 400), lengths=torch.tensor([400, 400]), ids=[0, 1],
                            labels=torch.tensor([ref, ref]), label_lengths=torch.tensor([3, 3]))
    model = _FixedPaths([[a, blank, unk, blank, i], [a, blank, a, blank, i]], len(vocab.tokens))
    assert task.valid_step(model, batch)["per"] == pytest.approx(2 / 6)
