"""A resume whose optimizer state has other parameter groups than the run's (a `*_lr_scale` changed between 1 and
another value) is refused in one line naming each setting that changed, its recorded value (read from the saved
groups) and the given one, and the way out; never by a guess, and never loaded with the moments paired wrongly."""

import pytest
import torch
from torch import nn

from xlsr.errors import CheckpointError
from xlsr.train.checkpoint import load_optimizer_state, optimizer_state
from xlsr.train.optimizer import build_optimizer
from xlsr.train.trainer_config import TrainerConfig


class Parts(nn.Module):
    """A CNN, a body and a CTC head of the same shapes: groups made by either scale have the same sizes."""

    def __init__(self):
        super().__init__()
        self.feature_encoder, self.body, self.lm_head = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)


def saved_with(**scales) -> dict:
    """The optimizer state a run with these `*_lr_scale` settings saves after one step."""
    torch.manual_seed(0)
    model = Parts()
    opt = build_optimizer(model, TrainerConfig(**scales))
    sum(p.sum() for p in model.parameters()).backward()
    opt.step()
    return optimizer_state(model, opt, fsdp=False)


def resume_with(state: dict, **scales) -> torch.optim.Optimizer:
    model = Parts()
    opt = build_optimizer(model, TrainerConfig(**scales))
    load_optimizer_state(model, opt, state, fsdp=False, where="RUN/checkpoints/update_0000004")
    return opt


def test_a_changed_scale_is_named_with_both_values():
    state = saved_with(head_lr_scale=20.0)
    with pytest.raises(CheckpointError) as exc:
        resume_with(state, head_lr_scale=20.0, feature_encoder_lr_scale=0.1)
    assert str(exc.value) == ("RUN/checkpoints/update_0000004: its optimizer's parameter groups differ from this run's "
                              "(feature_encoder_lr_scale 1 there, 0.1 now: a value other than 1 gives those parameters "
                              "groups of their own); give --feature-encoder-lr-scale 1 to resume, or choose another "
                              "--out")


def test_two_scales_swapped_in_groups_of_the_same_sizes_are_refused_not_paired_wrongly():
    state = saved_with(feature_encoder_lr_scale=0.5)
    with pytest.raises(CheckpointError, match=r"\(feature_encoder_lr_scale 0.5 there, 1 now; head_lr_scale 1 there, "
                                              r"2 now: .*\); give --feature-encoder-lr-scale 0.5 --head-lr-scale 1 to "
                                              r"resume, or choose another --out$"):
        resume_with(state, head_lr_scale=2.0)


def test_a_scale_changed_between_two_values_other_than_1_resumes():
    state = saved_with(feature_encoder_lr_scale=0.5)
    opt = resume_with(state, feature_encoder_lr_scale=0.2)  # the same groups: the configured scale stands
    assert sorted(g["lr_scale"] for g in opt.param_groups) == [0.2, 0.2, 1.0, 1.0]
    assert all(opt.state[p]["step"] == 1 for g in opt.param_groups for p in g["params"])


def test_a_numbered_state_of_an_earlier_version_names_the_groups_sizes():
    named = saved_with()
    number = {name: i for i, name in enumerate(n for g in named["param_groups"] for n in g["params"])}
    numbered = {"state": {number[n]: v for n, v in named["state"].items()},
                "param_groups": [{**g, "params": [number[n] for n in g["params"]]} for g in named["param_groups"]]}
    with pytest.raises(CheckpointError, match=r"^RUN/checkpoints/update_0000004: its optimizer's parameter groups "
                                              r"differ from this run's \(groups of 3, 3 parameters there, of 2, 2, 1, "
                                              r"1 now\); resume with the run's settings, or choose another --out$"):
        resume_with(numbered, head_lr_scale=2.0)
