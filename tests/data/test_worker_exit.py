"""A script that still holds a loader with worker processes ends: the workers ignore SIGTERM (worker_signals.py),
so Python's exit could not stop them and waited for ever; every such loader is now closed at exit."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    from xlsr.data.batching import pretrain_loader
    from xlsr.data.manifest import Utterance, write_manifest
    from xlsr.data.shard_index import read_index
    from xlsr.data.shard_loader import ShardLoader
    from xlsr.data.shard_stream import StreamSpec
    from xlsr.data.shards import write_shards

    root, case = Path(sys.argv[1]), sys.argv[2]
    utts = []
    for i in range(8):
        path = root / "xx" / "wav" / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.1 * np.sin(np.arange(16000) * (0.05 + 0.01 * i)), 16000)
        utts.append(Utterance(str(path), 16000, "xx", speaker="s", phones="a", text="a", id=f"u{i}"))
    write_manifest(root / "xx" / "train.jsonl", utts)
    if case.startswith("manifest"):
        loader = pretrain_loader(utts, max_tokens=32000, min_sample_size=8000, max_sample_size=16000, alpha=1.0,
                                 seed=0, num_workers=1)
    else:
        write_shards(root, root / "shards", shard_size=40_000, show_progress=False)
        index = read_index(root / "shards")
        spec = StreamSpec(index.root, tuple(index.of_split("train")), max_tokens=32000, pretrain=True,
                          labeler=None, shuffle_buffer=4, window_batches=2,
                          passes=1 if case == "shard-one-pass" else None)
        loader = ShardLoader(spec, num_workers=1, epoch_batches=None if case == "shard-one-pass" else 3)
    batches = iter(loader)
    next(batches)  # a worker is up, and the iteration is left half-way
    if case == "manifest-whole-epoch":
        list(batches)
    print("done", flush=True)
''')


@pytest.mark.parametrize("case", ["manifest-whole-epoch", "manifest-mid-epoch", "shard-stream", "shard-one-pass"])
def test_a_script_holding_a_loader_with_workers_exits(case, tmp_path):
    try:
        run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), case], capture_output=True, text=True,
                             timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: the script did not end (its loader's workers were waited on at exit)")
    assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr[-2000:]
