"""unwrap finds the model inside torch.compile's wrapper (--compile true), so that what is named by the model's own
parameter names (the optimizer state in a checkpoint, the feature cache's encoder) is the same with and without it."""

import torch

from xlsr.train.distributed import unwrap

from ._toy import ToyModel


def test_the_model_inside_torch_compile_is_found_with_its_own_parameter_names():
    model = ToyModel()
    compiled = torch.compile(model)  # lazy: nothing is compiled until a forward
    assert unwrap(compiled) is model
    assert [n for n, _ in unwrap(compiled).named_parameters()] == [n for n, _ in model.named_parameters()]
    assert unwrap(model) is model
