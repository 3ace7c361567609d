"""The probes' head training (train/linear_probe.py) against a loop written out from its definition: zero heads,
Adam on the sum of the heads' CTC losses (torch's, mean per target length), one fresh gradient per batch, the
learning rate on a cosine from `lr` at the first step to 0 at `total_steps`."""

import math

import pytest
import torch
import torch.nn.functional as F

from xlsr.train.linear_probe import HeadBatch, train_heads, zero_heads


def _batches(n: int, dims=(6, 3), vocab: int = 5, seed: int = 0) -> list[HeadBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lengths = torch.tensor([12, 9])
        labels = torch.randint(2, vocab, (2, 3), generator=g)
        out.append(HeadBatch([torch.randn(2, 12, d, generator=g) for d in dims], lengths, labels,
                             torch.tensor([3, 2])))
    return out


def _reference(batches: list[HeadBatch], dims, vocab: int, lr: float, total_steps: int):
    weights = [(torch.zeros(vocab, d, requires_grad=True), torch.zeros(vocab, requires_grad=True)) for d in dims]
    optimizer = torch.optim.Adam([p for pair in weights for p in pair], lr=lr)
    lrs = []
    for step, b in enumerate(batches):
        lrs.append(lr * (1 + math.cos(math.pi * step / total_steps)) / 2)
        optimizer.param_groups[0]["lr"] = lrs[-1]
        optimizer.zero_grad()
        total = 0
        for (w, bias), x in zip(weights, b.features):
            log_probs = (x @ w.T + bias).log_softmax(-1).transpose(0, 1)
            total = total + F.ctc_loss(log_probs, b.labels, b.frame_lengths, b.label_lengths, zero_infinity=True)
        total.backward()
        optimizer.step()
    return weights, lrs


class RecordingAdam(torch.optim.Adam):
    rates: list = []

    def step(self, closure=None):
        RecordingAdam.rates.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_heads_train_as_the_loop_written_out_from_the_definition(monkeypatch):
    dims, vocab, lr, total = (6, 3), 5, 0.05, 6
    batches = _batches(4, dims, vocab)
    RecordingAdam.rates = []
    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    heads = zero_heads(list(dims), vocab)
    losses = list(train_heads(heads, batches, lr=lr, total_steps=total))
    monkeypatch.undo()
    expected, lrs = _reference(batches, dims, vocab, lr, total)
    assert RecordingAdam.rates == pytest.approx(lrs)  # lr, then the cosine's values: 4 of 6 steps
    assert RecordingAdam.rates[0] == lr and RecordingAdam.rates[-1] == pytest.approx(lr / 2)  # cos(pi * 3/6) = 0
    assert len(losses) == 4 and losses[0].shape == (2,)
    for head, (w, b) in zip(heads, expected):
        torch.testing.assert_close(head.weight, w.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(head.bias, b.detach(), rtol=1e-5, atol=1e-6)


def test_zero_heads_start_at_zero_and_say_every_token_equally_likely():
    heads = zero_heads([4, 7], 9)
    for head, d in zip(heads, (4, 7)):
        assert head.weight.shape == (9, d)
        assert not head.weight.any() and not head.bias.any()
    (first,) = list(train_heads(zero_heads([6], 5), _batches(1, (6,)), lr=1e-3, total_steps=1))
    b = _batches(1, (6,))[0]
    uniform = torch.zeros(12, 2, 5).log_softmax(-1)
    expected = F.ctc_loss(uniform, b.labels, b.frame_lengths, b.label_lengths, zero_infinity=True)
    assert float(first[0]) == pytest.approx(float(expected), rel=1e-6)  # the loss before the first step
