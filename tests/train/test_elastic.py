"""One failing rank of a 2-process gloo run: a killed rank is restarted by torchrun and the run resumes exactly;
an XlsrError (a data error, out of memory) ends every rank within seconds with one `xlsr: error:` line."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xlsr.train import checkpoint as ckpt
from xlsr.train.elastic import FATAL_FILE, PEER_FAILED_EXIT
from xlsr.train.monitor import read_log

from . import _elastic_worker, _ranks
from ._toy import load_weights

WORKER = Path(_elastic_worker.__file__)
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: str, cue: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **cue)
    sys.exit(_elastic_worker.run(out))


def _run_ranks(out: Path, cue: dict) -> tuple[list[int], list[float]]:
    """Both ranks as processes of their own (no torchrun): their exit codes and when each ended (seconds)."""
    return _ranks.wait(_ranks.start(_rank, (_free_port(), str(out), cue)))


@pytest.mark.parametrize("kind", ["data", "oom"])
def test_an_error_on_one_rank_ends_the_other_at_once(tmp_path, capfd, kind):
    codes, ended = _run_ranks(tmp_path, {"XLSR_TEST_FAIL": f"1:5:{kind}"})
    err = capfd.readouterr().err
    assert codes == [PEER_FAILED_EXIT, 2]
    assert ended[0] - ended[1] < 20  # rank 0 did not wait for the collective timeout (30 min); loaded CPUs: margin
    errors = [line for line in err.splitlines() if line.startswith("xlsr: error:")]
    assert len(errors) == 1, err
    assert ("max_bad_share" if kind == "data" else "out of cpu memory at update 4") in errors[0]
    assert "xlsr: rank 0 stops: rank 1 failed: " in err
    assert "Traceback" not in err
    updates = [r["update"] for r in read_log(tmp_path / "log.jsonl") if r.get("split") == "train"]
    assert updates == [1, 2, 3, 4]
    assert not (tmp_path / FATAL_FILE).exists()  # only a torchrun job can restart, so only one records it


def _torchrun(out: Path, logs: Path, cue: dict, restarts: int = 1) -> tuple[int, float]:
    env = dict(os.environ, XLSR_TEST_OUT=str(out), OMP_NUM_THREADS="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
               PYTHONPATH=os.pathsep.join(sys.path), **cue)
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "--max-restarts", str(restarts),
           "--log-dir", str(logs), "--redirects", "3", str(WORKER)]
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, time.monotonic() - t0


def _rank_logs(logs: Path, attempt: int) -> dict[int, str]:
    """What each rank of one attempt printed (stdout and stderr)."""
    folder = next(logs.glob(f"*/attempt_{attempt}"))
    return {int(d.name): "".join(f.read_text() for f in sorted(d.glob("*.log"))) for d in folder.iterdir()}


@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_run_resumes_exactly(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run_ranks(straight, {})[0] == [0, 0]
    # rank 1 dies in update 6 of the first attempt: the checkpoint of update 3 is the newest
    code, _ = _torchrun(killed, tmp_path / "logs", {"XLSR_TEST_KILL": "1:6"})
    assert code == 0
    assert "resuming" in _rank_logs(tmp_path / "logs", 1)[0] and "update 3" in _rank_logs(tmp_path / "logs", 1)[0]
    a, b = load_weights(straight / "checkpoints" / "last"), load_weights(killed / "checkpoints" / "last")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # the log lists every update once (those logged after the checkpoint were trained again), with the same losses
    logs = [[(r["update"], r["loss"]) for r in read_log(d / "log.jsonl") if r.get("split") == "train"]
            for d in (straight, killed)]
    assert [u for u, _ in logs[1]] == list(range(1, 9))
    assert logs[0] == logs[1]
    assert ckpt.load_trainer_state(killed / "checkpoints" / "last")["update"] == 8


@pytest.mark.slow
def test_a_data_error_under_torchrun_ends_every_rank_and_is_not_retried(tmp_path):
    logs = tmp_path / "logs"
    code, _ = _torchrun(tmp_path / "run", logs, {"XLSR_TEST_FAIL": "1:5:data"})
    assert code != 0
    first, second = _rank_logs(logs, 0), _rank_logs(logs, 1)
    printed = first[0] + first[1]
    assert [line for line in printed.splitlines() if line.startswith("xlsr: error:")] == \
        ["xlsr: error: data/en/train.jsonl: 12 of 40 files unreadable (30% > max_bad_share 5%)"]
    assert "xlsr: rank 0 stops: rank 1 failed" in first[0] and "Traceback" not in printed
    # the restarted attempt trains nothing: it ends at once with the same line (rank 0), rank 1 quietly
    assert "restarting cannot help" in second[0] and "max_bad_share" in second[0]
    assert second[1] == "" and "Traceback" not in second[0]
    updates = [r["update"] for r in read_log(tmp_path / "run" / "log.jsonl") if r.get("split") == "train"]
    assert updates == [1, 2, 3, 4]
