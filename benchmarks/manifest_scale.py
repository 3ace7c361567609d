"""Manifests at scale: lists of Utterance objects (the old path) vs the utterance index, side by side.

Writes synthetic two-language corpora (es 60%, de 40%; every line points at one of a few real 2.5 s FLAC files
the script writes) of each size in --sizes, then measures each path in a fresh process that does what a
pretraining run does before its first update: read the train split, build the pretraining loader
(α sampler, epoch plan) and take --batches batches from it with 2 worker processes.

- first build: reading the split the first time (the index is built and written beside each manifest);
- startup: reading the split again in a new process + building the loader and its first epoch's plan;
- peak memory: the largest sum over the trainer process and its workers of PSS (/proc/PID/smaps_rollup:
  shared pages counted once, split between the processes that map them), sampled every 0.1 s, and the
  trainer's own peak RSS (getrusage); `per 1M` is the rise over a 1,000-line corpus, per million lines.

Wall time next to CPU time (process_time of the trainer process), since other jobs may share the machine; the
startup's major page faults (pages read from disk) and involuntary context switches (another process took the
core) say which of the two a gap between them comes from.

    python benchmarks/manifest_scale.py --sizes 100000
    python benchmarks/manifest_scale.py --sizes 1000000,10000000 --old-max 2000000
    python benchmarks/manifest_scale.py --sizes 100000 --old-max 0 --augment default   # with effects planned
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

LANGS = {"es": 0.6, "de": 0.4}
AUGMENT = ["none"]  # --augment, handed to every measuring child process
# 2-4 s clips (above the default min_sample_size, 32,000): a line's num_samples is its clip's true length, since the
# loader refuses audio whose decoded length disagrees with the manifest's
CLIP_SAMPLES = np.linspace(32_000, 64_000, 16).astype(int)
CLIPS = len(CLIP_SAMPLES)
BASELINE = 1000  # lines of the corpus whose peak memory is subtracted for `per 1M`


def write_corpus(root: Path, size: int, seed: int = 0) -> Path:
    """DIR/<lang>/train.jsonl with `size` lines in all; audio in DIR/../audio (shared by every size)."""
    audio = root.parent / "audio"
    if not audio.is_dir():
        audio.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for k in range(CLIPS):
            sf.write(audio / f"clip{k}.flac", (0.1 * rng.standard_normal(CLIP_SAMPLES[k])).astype(np.float32), 16000)
    if (root / "done").exists():
        return root
    rng = np.random.default_rng([seed, size])
    for lang, share in LANGS.items():
        n = int(round(size * share))
        (root / lang).mkdir(parents=True, exist_ok=True)
        clips, speakers = rng.integers(0, CLIPS, n), rng.integers(0, 2000, n)
        lengths = CLIP_SAMPLES[clips]
        with open(root / lang / "train.jsonl", "w", encoding="utf-8") as f:
            for start in range(0, n, 100_000):  # formatted in blocks: json.dumps per line would dominate
                f.write("".join(
                    f'{{"id": "{lang}-{i:08d}", "audio": "../../audio/clip{clips[i]}.flac", '
                    f'"num_samples": {lengths[i]}, "lang": "{lang}", "speaker": "{lang}-spk{speakers[i]}"}}\n'
                    for i in range(start, min(n, start + 100_000))))
    (root / "done").touch()
    return root


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except OSError:
        return 0  # the process ended


def _tree() -> list[int]:
    pids = [os.getpid()]
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


class PeakPss:
    """Samples the PSS of this process and its children in a thread; `.peak_mb` is the largest sum seen."""

    def __init__(self, every: float = 0.1) -> None:
        self.peak_kb, self.every, self.stop = 0, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        self.peak_kb = max(self.peak_kb, sum(_pss_kb(p) for p in _tree()))

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()

    @property
    def peak_mb(self) -> float:
        self.sample()
        return self.peak_kb / 1024


def child(args) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    from xlsr.data.batching import pretrain_loader

    monitor = PeakPss()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter(), time.process_time()
    if args.child == "old":
        from xlsr.data.manifest import read_split
        utts = read_split(args.data, "train")
    else:
        from xlsr.data.index_cache import open_split
        utts = open_split(args.data, "train")
    read = (time.perf_counter() - wall, time.process_time() - cpu)
    wall, cpu = time.perf_counter(), time.process_time()
    from xlsr.data.augment import parse_augment

    loader = pretrain_loader(utts, max_tokens=1_400_000, max_sample_size=250_000, alpha=0.5, seed=1,
                             num_workers=2, augment=parse_augment(args.augment))
    loader.plans()  # the first epoch's α draw and length-sorted packing
    plan = (time.perf_counter() - wall, time.process_time() - cpu)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)  # why startup's wall time exceeds its CPU time, if it does:
    waits = {"startup_major_faults": usage1.ru_majflt - usage0.ru_majflt,  # pages read from disk
             "startup_preempted": usage1.ru_nivcsw - usage0.ru_nivcsw}  # times other processes took the core
    wall = time.perf_counter()
    batches = iter(loader)
    for _ in range(args.batches):
        next(batches)
    first = time.perf_counter() - wall
    peak = monitor.peak_mb
    print(json.dumps({"utterances": len(utts), "read_s": read[0], "read_cpu_s": read[1], "plan_s": plan[0],
                      "plan_cpu_s": plan[1], **waits, "batches_s": first, "peak_pss_mb": peak,
                      "main_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(path: str, data: Path, batches: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", path, "--data", str(data), "--batches", str(batches),
                          "--augment", AUGMENT[0]],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        raise SystemExit(f"{path} on {data} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def drop_indexes(data: Path) -> None:
    for folder in data.glob("*/.*.index"):
        shutil.rmtree(folder)


def run_size(size: int, work: Path, args, base: dict) -> None:
    data = write_corpus(work / f"n{size}", size)
    rows = {}
    drop_indexes(data)
    first = measure("new", data, args.batches)  # builds the index
    warm = measure("new", data, args.batches)  # memory-maps it
    rows["index"] = (first, warm)
    if size <= args.old_max:
        old = measure("old", data, args.batches)  # no cache: every start is a first build
        rows["objects"] = (old, old)
    _print(size, rows, base)


def _print(size: int, rows: dict, base: dict) -> None:
    per = 1e6 / size
    print(f"\n{size:,} utterances (es 60%, de 40%), {'' if 'objects' in rows else 'objects not run, '}"
          f"pretrain loader with 2 workers, 3 batches")
    print(f"{'':<34}{'objects (old)':>16}{'index (new)':>16}{'old/new':>9}")

    def line(label, fn, fmt="{:.1f}"):
        values = {k: fn(*v, k) for k, v in rows.items()}
        old, new = values.get("objects"), values["index"]
        ratio = f"{old / new:.1f}x" if old is not None and new > 0 else "-"
        print(f"{label:<34}{fmt.format(old) if old is not None else '-':>16}{fmt.format(new):>16}{ratio:>9}")

    line("first build: read, wall s", lambda f, w, k: f["read_s"])
    line("first build: read, CPU s", lambda f, w, k: f["read_cpu_s"])
    line("startup: read + plan, wall s", lambda f, w, k: w["read_s"] + w["plan_s"])
    line("startup: read + plan, CPU s", lambda f, w, k: w["read_cpu_s"] + w["plan_cpu_s"])
    line("startup per 1M, wall s", lambda f, w, k: (w["read_s"] + w["plan_s"]) * per)
    line("startup: pages read from disk", lambda f, w, k: w["startup_major_faults"], "{:.0f}")
    line("startup: times preempted", lambda f, w, k: w["startup_preempted"], "{:.0f}")
    line("3 batches, wall s", lambda f, w, k: w["batches_s"])
    line("peak PSS, trainer + workers, MB", lambda f, w, k: w["peak_pss_mb"], "{:.0f}")
    line("peak RSS, trainer alone, MB", lambda f, w, k: w["main_maxrss_mb"], "{:.0f}")
    line("PSS over 1k-line corpus, per 1M, MB", lambda f, w, k: (w["peak_pss_mb"] - base[k]) * per, "{:.0f}")
    sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000000", help="comma-separated manifest sizes (lines in all)")
    p.add_argument("--work", default=None, help="folder for the corpora (kept; default: a temporary one)")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--old-max", type=int, default=2_000_000,
                   help="largest size the old path runs at (~3.3 KB per utterance and process: 10M would need "
                        "over 30 GB)")
    p.add_argument("--augment", default="none",
                   help="on-the-fly effects of the loader (docs/synth.md), e.g. default: their epoch planning "
                        "measured too (default: none)")
    p.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    AUGMENT[0] = args.augment
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="manifest-scale-"))
    base_data = write_corpus(work / f"n{BASELINE}", BASELINE)
    drop_indexes(base_data)
    measure("new", base_data, args.batches)
    base = {"index": measure("new", base_data, args.batches)["peak_pss_mb"],
            "objects": measure("old", base_data, args.batches)["peak_pss_mb"]}
    print(f"baseline ({BASELINE:,} lines): peak PSS objects {base['objects']:.0f} MB, index {base['index']:.0f} MB")
    for size in (int(s) for s in args.sizes.split(",")):
        run_size(size, work, args, base)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
