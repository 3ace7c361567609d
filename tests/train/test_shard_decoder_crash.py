"""Pretraining from a shard folder, end to end. A decoder crash in the training process itself (num_workers 0;
validation always): that run ends, the same command skips the utterance (data/decoding_record.py keeps its shard and
member key), names it, and finishes. In a data worker, a crash or a hang past decode_timeout costs the utterance and
the run goes on; a resume knows it from the checkpoint and does not decode it again."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from xlsr.data.decoding_record import CRASHED, FOLDER
from xlsr.data.shards import write_shards
from xlsr.train.monitor import read_log

from ._audio import TINY_MODEL, make_corpus

# the decoder in the training process: a segfault on the utterance whose id CRASH_ON names
SITE = textwrap.dedent("""
    import os, resource, signal
    from xlsr.data import shard_stream
    _decode = shard_stream.decode_audio
    def decode(data, name, *args, **kwargs):
        if name.endswith("utterance " + os.environ.get("CRASH_ON", "?")):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
        return _decode(data, name, *args, **kwargs)
    shard_stream.decode_audio = decode
""")

RUN = ("import json, sys; from xlsr.train.pretrain import PretrainConfig, pretrain; "
       "pretrain(PretrainConfig(**json.loads(sys.argv[1])))")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("tones"), per_lang=6)
    out = tmp_path_factory.mktemp("shards")
    write_shards(corpus, out, shard_size=40_000, show_progress=False)
    return out


@pytest.mark.parametrize("split", ["train", "dev"])
def test_the_same_command_after_a_crash_skips_the_utterance_and_finishes(shards, tmp_path, split):
    victim = f"aa_{split}_2"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITE)
    run = tmp_path / "run"
    cfg = dict(data=str(shards), out=str(run), preset="tiny", model=dict(TINY_MODEL), max_updates=12, lr=2e-3,
               warmup_updates=2, max_tokens=64000, min_sample_size=8000, max_sample_size=16000, num_workers=0,
               log_every=1, valid_every=6, save_every=3, progress=False, tensorboard=False, device="cpu",
               max_bad_share=0.2, feature_health_frames=0)
    env = {**os.environ, "CRASH_ON": victim, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}

    def pretrain_in_a_process():
        return subprocess.run([sys.executable, "-c", RUN, json.dumps(cfg)], env=env, capture_output=True, text=True)

    first = pretrain_in_a_process()
    assert first.returncode == -signal.SIGSEGV, first.stderr[-2000:]
    again = pretrain_in_a_process()
    assert again.returncode == 0, again.stderr[-2000:]
    recorded = [json.loads(line)["audio"] for line in (run / FOLDER / CRASHED).read_text().splitlines()]
    assert len(recorded) == 1 and recorded[0].startswith(str(shards / split))  # SHARD:MEMBER of the victim
    assert f"{recorded[0]}: an earlier run in the run folder {run} ended while decoding it" in again.stderr
    log = read_log(run / "log.jsonl")
    assert max(r["update"] for r in log if r.get("split") == "train") == 12


# in a data worker: a segfault, or a hang, on the utterance whose id CRASH_ON names
WORKER_SITE = textwrap.dedent("""
    import os, resource, signal, time
    from torch.utils.data import get_worker_info
    from xlsr.data import shard_stream
    _decode = shard_stream.decode_audio
    def decode(data, name, *args, **kwargs):
        if name.endswith("utterance " + os.environ.get("CRASH_ON", "?")) and get_worker_info() is not None:
            with open(os.environ["DECODINGS"], "a") as f:
                f.write(name + "\\n")
            if os.environ["HOW"] == "hang":
                time.sleep(3600)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
        return _decode(data, name, *args, **kwargs)
    shard_stream.decode_audio = decode
""")


@pytest.mark.parametrize("how", ["segv", "hang"])
def test_a_run_with_data_workers_loses_the_utterance_not_the_run_and_resumes_without_it(shards, tmp_path, how):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(WORKER_SITE)
    run, decodings = tmp_path / "run", tmp_path / "decodings"
    cfg = dict(data=str(shards), out=str(run), preset="tiny", model=dict(TINY_MODEL), max_updates=10, lr=2e-3,
               warmup_updates=2, max_tokens=64000, min_sample_size=8000, max_sample_size=16000, num_workers=2,
               log_every=1, valid_every=0, save_every=5, progress=False, tensorboard=False, device="cpu",
               max_bad_share=0.2, feature_health_frames=0, decode_timeout=2.0)
    env = {**os.environ, "CRASH_ON": "aa_train_2", "HOW": how, "DECODINGS": str(decodings), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}

    def pretrain_in_a_process(**changes):
        return subprocess.run([sys.executable, "-c", RUN, json.dumps({**cfg, **changes})], env=env,
                              capture_output=True, text=True, timeout=300)

    first = pretrain_in_a_process()
    assert first.returncode == 0, first.stderr[-2000:]
    what = "crashed on it (its data worker was killed by SIGSEGV)" if how == "segv" else "hung on it (no answer in"
    assert f"utterance aa_train_2: the audio decoder {what}" in first.stderr
    assert "Traceback" not in first.stderr
    log = read_log(run / "log.jsonl")
    assert max(r["update"] for r in log if r.get("split") == "train") == 10
    assert max(r.get("bad_files", 0) for r in log if r.get("split") == "train") >= 1
    resumed = pretrain_in_a_process(max_updates=20)  # from update 10: the checkpoint's loader state knows it
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"utterance aa_train_2: the audio decoder {what}" in resumed.stderr  # reached again: charged, and
    assert len(decodings.read_text().splitlines()) == 1  # decoded once, in the first run
