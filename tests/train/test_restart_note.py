"""The torchrun warning: only a job that may restart (--max-restarts above 0) and keeps one store for all its attempts
(torchrun's default, TORCHELASTIC_USE_AGENT_STORE=True) is told to set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1."""

import pytest

from xlsr.train.elastic import restart_note


@pytest.mark.parametrize("shared, restarts, warned", [
    ("True", "3", True),
    ("True", "0", False),  # never restarted: the shared store does no harm
    ("False", "3", False),  # a store per attempt already (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1)
    (None, None, False),  # not under torchrun
])
def test_only_a_job_that_restarts_on_a_shared_store_is_warned(monkeypatch, shared, restarts, warned):
    for name, value in (("TORCHELASTIC_USE_AGENT_STORE", shared), ("TORCHELASTIC_MAX_RESTARTS", restarts)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    note = restart_note()
    assert (note is not None) == warned
    if warned:
        assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in note
