"""Under FSDP rank 0 builds a CPU copy of the model for its first save after each start (trainer_checkpoints.py,
`_model_for_saving`). Building draws random numbers; drawn from the run's own random state, they shifted the dropout
and masks of every later update, at another update in a resumed run than in a straight one, so a stopped FSDP run
did not resume exactly. The copy is built from a fork of the random state."""

import types

import torch

from xlsr.train import trainer_checkpoints
from xlsr.train.trainer_checkpoints import TrainerCheckpoints


def test_building_the_saving_copy_leaves_the_random_state_as_it_was(monkeypatch):
    model = torch.nn.Linear(4, 3)
    monkeypatch.setattr(trainer_checkpoints.dist_util, "full_state_dict", lambda net: model.state_dict())
    owner = types.SimpleNamespace(fsdp=True, net=model, info=types.SimpleNamespace(is_main=True),
                                  task=types.SimpleNamespace(build_model=lambda: torch.nn.Linear(4, 3)))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    copy = TrainerCheckpoints._model_for_saving(owner)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(copy.weight, model.weight)
