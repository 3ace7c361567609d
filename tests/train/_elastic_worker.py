"""A torchrun worker for tests/train/test_elastic.py: the toy Task under the Trainer, failing on cue.

XLSR_TEST_OUT: the run folder. XLSR_TEST_KILL=R:U: rank R SIGKILLs itself in update U of the first attempt.
XLSR_TEST_FAIL=R:U:KIND: rank R raises in update U (KIND: data = an XlsrError, oom = a simulated out-of-memory).
"""

import os
import signal
import sys

import torch

from xlsr.errors import XlsrError
from xlsr.train.trainer import Trainer, TrainerConfig

if __package__:  # imported by test_elastic.py
    from ._toy import ToyTask
else:  # run by torchrun as a script: this folder is sys.path[0]
    from _toy import ToyTask


def _cue(name: str) -> list[str] | None:
    value = os.environ.get(name)
    return value.split(":") if value else None


class CuedToyTask(ToyTask):
    def train_step(self, model, batch):
        update = int(batch[2]) + 1  # one micro-batch per update, no skipped steps: batch index + 1
        kill, fail = _cue("XLSR_TEST_KILL"), _cue("XLSR_TEST_FAIL")
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if kill and first_attempt and int(kill[0]) == self.info.rank and int(kill[1]) == update:
            os.kill(os.getpid(), signal.SIGKILL)
        if fail and int(fail[0]) == self.info.rank and int(fail[1]) == update:
            if fail[2] == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise XlsrError("data/en/train.jsonl: 12 of 40 files unreadable (30% > max_bad_share 5%)")
        return super().train_step(model, batch)


def run_config(out: str) -> TrainerConfig:
    """The run every test of test_elastic.py makes: 8 updates of 2 ranks, a checkpoint every 3."""
    return TrainerConfig(out=out, max_updates=8, lr=1e-2, warmup_updates=0, device="cpu", log_every=1,
                         valid_every=0, save_every=3, keep_last=2, progress=False, tensorboard=False, clip_norm=0.5)


def run(out: str) -> int:
    """Train as `xlsr pretrain` would: an XlsrError is one `xlsr: error:` line and exit status 2."""
    torch.set_num_threads(1)
    try:
        Trainer(run_config(out), CuedToyTask(dropout=0.2, batches_per_epoch=20, rows=4)).fit()
    except XlsrError as exc:
        print(f"xlsr: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run(os.environ["XLSR_TEST_OUT"]))
