"""TORCH_FORCE_WEIGHTS_ONLY_LOAD makes torch refuse the restricted unpickler fairseq files are read with: the refusal
says so (not "not a readable checkpoint"), and without the variable the same file loads."""

import argparse

import pytest
import torch

from xlsr.errors import CheckpointError
from xlsr.interop.fairseq import read_fairseq_checkpoint


def test_a_forced_weights_only_load_is_named_as_the_reason(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": {"w": torch.zeros(2)}}, path)
    assert sorted(read_fairseq_checkpoint(path)) == ["args", "model"]
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match=r"checkpoint_best.pt: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set.*unset it"):
        read_fairseq_checkpoint(path)
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0")
    assert sorted(read_fairseq_checkpoint(path)) == ["args", "model"]
