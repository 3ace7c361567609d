"""The optimizer's settings reach AdamW, and its parameter groups keep the order earlier checkpoints were written in."""

import torch

from xlsr.model.config import Wav2Vec2Config
from xlsr.model.pretraining import Wav2Vec2ForPreTraining
from xlsr.train.optimizer import build_optimizer
from xlsr.train.trainer_config import TrainerConfig


def test_adam_betas_and_eps_of_the_configuration_reach_every_group():
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    opt = build_optimizer(model, TrainerConfig(adam_betas=(0.8, 0.95), adam_eps=1e-5, feature_encoder_lr_scale=0.5))
    assert len(opt.param_groups) > 2
    assert all(tuple(g["betas"]) == (0.8, 0.95) and g["eps"] == 1e-5 for g in opt.param_groups)


def test_adam_eps_changes_the_step():
    # eps far above the gradient's scale turns Adam's first step lr * g / (|g| + eps) into about lr * g / eps
    p = torch.nn.Parameter(torch.zeros(2, 2))
    model = torch.nn.Module()
    model.weight = p
    opt = build_optimizer(model, TrainerConfig(lr=1.0, adam_eps=10.0, weight_decay=0.0))
    p.grad = torch.full((2, 2), 0.5)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((2, 2), -0.5 / 10.5))


def test_the_first_two_groups_are_the_decayed_and_the_undecayed_ones_at_scale_1():
    # checkpoints of earlier versions number their optimizer state by place in these two groups: a resume pairs
    # the saved moments with this order (train/checkpoint.py: load_optimizer_state)
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    opt = build_optimizer(model, TrainerConfig(weight_decay=0.1, feature_encoder_lr_scale=0.5, head_lr_scale=2.0))
    first, second = opt.param_groups[:2]
    assert (first["weight_decay"], first["lr_scale"]) == (0.1, 1.0)
    assert (second["weight_decay"], second["lr_scale"]) == (0.0, 1.0)
    assert all(p.ndim >= 2 for p in first["params"])
