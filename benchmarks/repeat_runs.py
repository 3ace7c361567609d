"""Several training runs in one process (a notebook, a sweep, the demo): resident memory and speed per run, with the
end-of-run `release_memory()` (xlsr.train.release_memory) and without it, side by side.

Each mode runs in a fresh process: `--runs` consecutive `pretrain()` calls of the `tiny-demo` recipe (`--updates`
updates each, no validation or checkpoints between) on a small synthesized corpus; after every run the process's
resident set size is read from /proc. "without" replaces release_memory with a no-op in that process. A short
warm-up process runs first (the first process after synthesis pays cold caches). Prints the
resident memory after each run, seconds per update of each run, and the ratios.

    python benchmarks/repeat_runs.py --work /tmp/repeat                  # 3 runs x 30 updates per mode
    python benchmarks/repeat_runs.py --work /tmp/repeat --runs 4 --updates 50
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
import torch
from xlsr.config import load_config
from xlsr.train import pretrain as pretrain_module
from xlsr.train.release_memory import resident_bytes
work, runs, updates, release = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] != "without"
if not release:
    pretrain_module.release_memory = lambda: 0
rows = []
for i in range(runs):
    cfg = load_config(pretrain_module.PretrainConfig, None, {
        "recipe": "tiny-demo", "data": f"{work}/corpus", "out": f"{work}/{sys.argv[4]}/run{i}", "max_updates": updates,
        "update_freq": 1, "valid_every": 0, "save_every": 0, "tensorboard": False, "progress": False,
        "num_workers": 0, "probe_every": 0})
    t0 = time.perf_counter()
    pretrain_module.pretrain(cfg)
    rows.append({"seconds_per_update": (time.perf_counter() - t0) / updates, "resident_bytes": resident_bytes()})
print(json.dumps(rows))
"""


def run_mode(work: Path, mode: str, runs: int, updates: int) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(work), str(runs), str(updates), mode], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the corpus and the runs (emptied per mode)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args()
    work = Path(args.work)
    if not (work / "corpus" / "es" / "train.jsonl").is_file():
        subprocess.run([sys.executable, "-m", "xlsr.cli.main", "synth", "--out", str(work / "corpus"), "--langs",
                        "es,de,ru", "--utts-per-lang", "40", "--seed", "1"], check=True, capture_output=True)
    shutil.rmtree(work / "warmup", ignore_errors=True)
    run_mode(work, "warmup", 1, 2)  # the first process after synthesis pays cold caches: not one of the modes
    results = {}
    for mode in ("without", "with"):
        shutil.rmtree(work / mode, ignore_errors=True)
        results[mode] = run_mode(work, mode, args.runs, args.updates)
    print(f"{args.runs} consecutive pretrain() runs of {args.updates} updates (tiny-demo) in one process")
    print("run   resident after (MB): without / with / ratio     s/update: without / with / ratio")
    for i, (a, b) in enumerate(zip(results["without"], results["with"])):
        ra, rb = a["resident_bytes"] / 2**20, b["resident_bytes"] / 2**20
        sa, sb = a["seconds_per_update"], b["seconds_per_update"]
        print(f"{i:>3}   {ra:8.0f} / {rb:8.0f} / {rb / ra:5.2f}x              {sa:.3f} / {sb:.3f} / {sb / sa:5.2f}x")


if __name__ == "__main__":
    main()
