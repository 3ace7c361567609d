"""The pretraining objective can be optimised: the contrastive loss falls on generated audio."""

import pytest
import torch
from model_fixtures import micro_config, sine_batch

from xlsr import Wav2Vec2Config, Wav2Vec2ForPreTraining


def _train(cfg: Wav2Vec2Config, steps: int, lr: float, batch: int, samples: int) -> list[float]:
    """Adam on one fixed batch; returns the contrastive loss per masked frame (nats) at each step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread avoids oversubscription on a shared machine
    try:
        torch.manual_seed(0)
        model = Wav2Vec2ForPreTraining(cfg).train()
        x = sine_batch(batch, samples)
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-6)
        gen = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(steps):
            out = model(x, generator=gen)
            (out.loss / out.num_masked).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            losses.append(out.contrastive_loss.item() / out.num_masked)
        return losses
    finally:
        torch.set_num_threads(threads)


def test_small_model_loss_falls():
    cfg = micro_config(num_negatives=20, num_codevectors_per_group=32, mask_length=5)
    losses = _train(cfg, steps=40, lr=2e-3, batch=4, samples=16000)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.3, (first, last)


@pytest.mark.slow
def test_tiny_preset_loss_falls():
    losses = _train(Wav2Vec2Config.preset("tiny"), steps=30, lr=5e-4, batch=4, samples=16000)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.2, (first, last)
