"""A decoder that crashes the training process itself (num_workers 0, fine-tuning's default, for its training and
dev data alike) ends that run, but not the next: the same command skips the file (data/decoding_record.py),
names it, and finishes. So does a decoder that hangs there: past decode_timeout the run ends, naming the file."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from xlsr.data.decoding_record import CRASHED, FOLDER, HUNG_EXIT
from xlsr.train.monitor import read_log

from ._tones import write_tone_corpus
from .test_finetune import SMALL

# the decoder in the training process: a segfault on the file CRASH_ON names, as a damaged file may cause
SITE = textwrap.dedent("""
    import os, resource, signal
    from xlsr.data import batching
    _load = batching.load_audio
    def load(path, *args, **kwargs):
        if str(path) == os.environ.get("CRASH_ON"):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
        return _load(path, *args, **kwargs)
    batching.load_audio = load
""")

# the same, but the decoder hangs, computing round a loop, on the file HANG_ON names
HANG_SITE = textwrap.dedent("""
    import os
    from xlsr.data import batching
    _load = batching.load_audio
    def load(path, *args, **kwargs):
        while str(path) == os.environ.get("HANG_ON"):
            pass
        return _load(path, *args, **kwargs)
    batching.load_audio = load
""")

RUN = ("import json, sys; from xlsr.train.finetune import FinetuneConfig, finetune; "
       "finetune(FinetuneConfig(**json.loads(sys.argv[1])))")


@pytest.mark.parametrize("split", ["train", "dev"])
def test_the_same_command_after_a_crash_skips_the_file_and_finishes(tmp_path, split):
    train = write_tone_corpus(tmp_path, "train", 12, seed=1)
    dev = write_tone_corpus(tmp_path, "dev", 6, seed=2)  # one bad file of 6: within max_bad_share 0.2
    crash_on = str(train.parent / "wav" / "train_005.wav") if split == "train" else str(dev.parent / "wav/dev_002.wav")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITE)
    run = tmp_path / "run"
    cfg = {"train": [str(train)], "dev": [str(dev)], "out": str(run), "init": "none", "model": SMALL,
           "max_updates": 6, "valid_every": 3, "save_every": 2, "log_every": 1, "max_tokens": 80_000,
           "max_bad_share": 0.2, "num_workers": 0, "progress": False, "tensorboard": False, "seed": 1}
    env = {**os.environ, "CRASH_ON": crash_on, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}

    def finetune_in_a_process():
        return subprocess.run([sys.executable, "-c", RUN, json.dumps(cfg)], env=env, capture_output=True, text=True)

    first = finetune_in_a_process()
    assert first.returncode == -signal.SIGSEGV, first.stderr[-2000:]
    again = finetune_in_a_process()
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{crash_on}: an earlier run in the run folder {run} ended while decoding it" in again.stderr
    assert [json.loads(line)["audio"] for line in (run / FOLDER / CRASHED).read_text().splitlines()] == [crash_on]
    log = read_log(run / "log.jsonl")
    assert max(r["update"] for r in log if r.get("split") == "train") == 6
    if split == "train":
        assert max(r.get("bad_files", 0) for r in log if r.get("split") == "train") == 1


def test_a_decoder_that_hangs_in_the_training_process_ends_the_run_and_the_same_command_skips_the_file(tmp_path):
    train = write_tone_corpus(tmp_path, "train", 12, seed=1)
    dev = write_tone_corpus(tmp_path, "dev", 6, seed=2)
    hang_on = str(train.parent / "wav" / "train_005.wav")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HANG_SITE)
    run = tmp_path / "run"
    cfg = {"train": [str(train)], "dev": [str(dev)], "out": str(run), "init": "none", "model": SMALL,
           "max_updates": 6, "valid_every": 3, "save_every": 2, "log_every": 1, "max_tokens": 80_000,
           "max_bad_share": 0.2, "num_workers": 0, "progress": False, "tensorboard": False, "seed": 1,
           "decode_timeout": 2}
    env = {**os.environ, "HANG_ON": hang_on, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}

    def finetune_in_a_process():
        return subprocess.run([sys.executable, "-c", RUN, json.dumps(cfg)], env=env, capture_output=True, text=True,
                              timeout=300)

    first = finetune_in_a_process()
    assert first.returncode == HUNG_EXIT, first.stderr[-2000:]
    assert f"{hang_on}: the audio decoder has been on it for more than 2 s in the training process" in first.stderr
    again = finetune_in_a_process()
    assert again.returncode == 0, again.stderr[-2000:]
    assert (f"{hang_on}: an earlier run in the run folder {run} ended while decoding it in the training process (its "
            f"decoder hung: more than 2 s on it)") in again.stderr
    log = read_log(run / "log.jsonl")
    assert max(r["update"] for r in log if r.get("split") == "train") == 6
    assert max(r.get("bad_files", 0) for r in log if r.get("split") == "train") == 1
