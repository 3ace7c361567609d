"""A job's environment that cannot be right (WORLD_SIZE or RANK set by hand, a leftover of another launcher) stops
`xlsr pretrain`/`finetune` with one line naming the variable, instead of a traceback or a rank that waits in silence
for peers no one started."""

from __future__ import annotations

import io
import threading

import pytest
import torch.distributed as dist

from xlsr.errors import XlsrError
from xlsr.train import distributed
from xlsr.train.distributed import init_distributed

JOB_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def env(monkeypatch):
    for name in JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variables, says", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set in the environment but RANK is not"),
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' in the environment is not a whole number"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 in the environment is below 1"),
    ({"RANK": "1"}, "RANK=1 is set in the environment but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 in the environment is outside WORLD_SIZE=2 (ranks 0 to 1)"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x"}, "LOCAL_RANK='x' in the environment is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1"},
     "WORLD_SIZE=2 and RANK=1 are set in the environment but MASTER_PORT is not"),
], ids=["world-without-rank", "not-a-number", "zero", "rank-without-world", "rank-outside", "local-rank",
        "no-master-port"])
def test_an_impossible_job_environment_is_one_line_naming_the_variable(env, variables, says):
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(XlsrError) as raised:
        init_distributed("cpu")
    assert str(raised.value).startswith(says)
    assert "torchrun" in str(raised.value) and "\n" not in str(raised.value)
    assert not dist.is_initialized()


def test_a_rank_whose_peers_never_come_says_what_it_waits_for(env, monkeypatch):
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}.items():
        env.setenv(name, value)
    monkeypatch.setattr(distributed, "JOIN_NOTE_SECONDS", 0.05)
    said = threading.Event()

    class Stderr(io.StringIO):
        def write(self, text):
            said.set()
            return super().write(text)

    stderr = Stderr()
    monkeypatch.setattr("sys.stderr", stderr)
    joined = []
    # the rendezvous, played: it waits (for the note, at most 5 s) as a rank waits for peers that never come
    monkeypatch.setattr(dist, "init_process_group", lambda backend: joined.append(said.wait(5.0)))
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(joined))
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    init_distributed("cpu")
    assert joined == [True]
    assert stderr.getvalue().startswith("xlsr: rank 0 has waited 0 s for the other processes of WORLD_SIZE=2 at "
                                        "127.0.0.1:29533")
