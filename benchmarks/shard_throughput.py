"""Reading a corpus from files vs from shards, side by side, and the data wait of pretraining from shards.

1. The same corpus through the real loaders with the same workers: `pretrain_loader` over the manifests (one
   audio file per utterance) and `shard_pretrain_loader` over `xlsr data shard`'s tars, the same number of
   utterances each, alternating runs; utterances/s and audio-seconds/s (the batches' rows × crop), wall and CPU.
2. A short tiny-model `pretrain` from the shards and from the files: the Trainer's `data_wait_share` (the time in
   the loader's next() over the whole update, from log.jsonl), after the first updates, and the audio seconds
   trained per second (the two loaders pack and crop batches differently, so seconds per update alone misleads).

    python benchmarks/shard_throughput.py                  # synthesizes a small tone corpus
    python benchmarks/shard_throughput.py --data DIR --updates 40
    python benchmarks/shard_throughput.py --work /mnt/nfs/bench --file-format flac   # on the storage shards are for

Shards are for corpora on network or object storage, where every file open is a round trip: `--work` puts the
synthesized corpus and the shards there (default: a local temporary folder, whose files sit in the page cache).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import Utterance, read_split, write_manifest
from xlsr.data.shard_loader import shard_pretrain_loader
from xlsr.data.shards import write_shards
from xlsr.rates import SAMPLE_RATE
from xlsr.train.monitor import read_log
from xlsr.train.pretrain import PretrainConfig, pretrain

TINY = {"conv_layers": [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]],
        "hidden_size": 32, "num_layers": 2, "num_heads": 2, "ffn_dim": 64, "final_dim": 16, "codevector_dim": 16,
        "num_codevectors_per_group": 8, "num_negatives": 5, "mask_prob": 0.5, "mask_length": 3, "conv_pos": 8,
        "conv_pos_groups": 4}


def write_corpus(root: Path, per_lang: int, seed: int = 0, file_format: str = "wav") -> None:
    """Two languages of noisy tones, 1-5 s, as 16-bit wav or flac files + manifests (train and dev)."""
    rng = np.random.default_rng(seed)
    for lang in ("aa", "bb"):
        for split, n in (("train", per_lang), ("dev", 4)):
            utts = []
            for i in range(n):
                t = np.arange(int(rng.uniform(1, 5) * SAMPLE_RATE)) / SAMPLE_RATE
                x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(len(t))
                path = root / lang / "wav" / f"{split}{i:05d}.{file_format}"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, x.astype(np.float32), SAMPLE_RATE)
                utts.append(Utterance(str(path), len(t), lang, id=f"{lang}{split}{i}"))
            write_manifest(root / lang / f"{split}.jsonl", utts)


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def read_through(loader, utts: int) -> dict:
    """Iterate `loader` until `utts` utterances came out; the workers end before CPU time is read."""
    wall0, cpu0 = time.perf_counter(), _cpu()
    n = audio = 0
    while n < utts:
        for batch in loader:
            n += batch.waveforms.shape[0]
            audio += int(batch.lengths.sum()) / SAMPLE_RATE
            if n >= utts:
                break
        loader.set_epoch(loader.epoch + 1)
    wall = time.perf_counter() - wall0
    del loader
    gc.collect()
    time.sleep(0.5)  # worker processes exit, so that their CPU time is counted
    return {"utts": n, "audio": audio, "wall": wall, "cpu": _cpu() - cpu0}


def throughput(args, data: Path, shards: Path) -> None:
    utts = read_split(data, "train")
    kw = dict(max_tokens=args.max_tokens, min_sample_size=16000, max_sample_size=args.max_sample_size,
              num_workers=args.workers)
    results: dict[str, list[dict]] = {"files": [], "shards": []}
    count = args.epochs * len(utts)  # several epochs: the shuffle buffer's fill is a startup cost
    for _ in range(args.repeats):
        results["files"].append(read_through(pretrain_loader(utts, **kw), count))
        results["shards"].append(read_through(shard_pretrain_loader(shards, **kw, shuffle_buffer=256), count))
    print(f"\nreading {args.epochs} x {len(utts)} utterances ({sum(u.num_samples for u in utts) / SAMPLE_RATE / 60:.1f} min of audio), "
          f"{args.workers} workers, best of {args.repeats}:")
    print(f"{'source':<8}{'utt/s':>10}{'audio s/s':>12}{'wall s':>9}{'cpu s':>8}")
    best = {}
    for name, runs in results.items():
        r = max(runs, key=lambda r: r["utts"] / r["wall"])
        best[name] = r["utts"] / r["wall"]
        print(f"{name:<8}{r['utts'] / r['wall']:>10.1f}{r['audio'] / r['wall']:>12.1f}{r['wall']:>9.2f}{r['cpu']:>8.2f}")
    print(f"shards / files throughput: {best['shards'] / best['files']:.2f}x")


def _train(source: str, run: str, args) -> None:
    """One short tiny-model pretraining (in a fresh process: repeated runs in one process get slower)."""
    pretrain(PretrainConfig(data=source, out=run, preset="tiny", model=dict(TINY), max_updates=args.updates,
                            max_tokens=args.max_tokens, min_sample_size=16000, max_sample_size=args.max_sample_size,
                            num_workers=args.workers, log_every=1, valid_every=0, save_every=0, progress=False,
                            tensorboard=False, device="cpu", feature_health_frames=0, shuffle_buffer=256))


def _over_run(recs: list[dict], key: str | None) -> float:
    """A per-update rate or share over a run, weighted by the updates' durations (None: mean seconds per update)."""
    seconds = sum(r["seconds_per_update"] for r in recs)
    if key is None:
        return seconds / len(recs)
    return sum(r[key] * r["seconds_per_update"] for r in recs) / seconds


def data_wait(args, data: Path, shards: Path, out: Path) -> None:
    print(f"\npretraining the tiny model for {args.updates} updates ({args.workers} workers), each run in a fresh "
          f"process, the order alternating, best of {args.repeats}; after the first {args.skip} updates:")
    spawn = multiprocessing.get_context("spawn")
    results: dict[str, list[dict]] = {"files": [], "shards": []}
    for repeat in range(args.repeats):
        order = [("files", data), ("shards", shards)]
        for name, source in order if repeat % 2 == 0 else order[::-1]:
            run = out / f"run-{name}-{repeat}"
            child = spawn.Process(target=_train, args=(str(source), str(run), args))
            child.start()
            child.join()
            if child.exitcode:
                raise SystemExit(f"the {name} run failed (exit status {child.exitcode})")
            recs = [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"][args.skip:]
            # the two loaders pack and crop batches differently, so seconds per update alone could mislead
            results[name].append({"s_per_update": _over_run(recs, None), "wait": _over_run(recs, "data_wait_share"),
                                  "audio_per_s": _over_run(recs, "audio_s_per_s")})
    best = {}
    for name, runs in results.items():
        r = best[name] = max(runs, key=lambda r: r["audio_per_s"])
        worst = max(x["wait"] for x in runs)
        print(f"{name:<8}{r['s_per_update']:>8.3f} s/update {r['audio_per_s']:>8.1f} audio s/s   "
              f"data wait {r['wait']:6.1%} (worst run {worst:.1%})")
    print(f"shards / files training throughput: {best['shards']['audio_per_s'] / best['files']['audio_per_s']:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="corpus folder with <lang>/train.jsonl (default: synthesize one)")
    p.add_argument("--work", type=Path, help="where the synthesized corpus and the shards are written (default: a "
                   "local temporary folder); a folder on network storage measures what shards are for")
    p.add_argument("--per-lang", type=int, default=200, help="synthesized utterances per language")
    p.add_argument("--file-format", choices=["wav", "flac"], default="wav", help="of the synthesized audio files")
    p.add_argument("--epochs", type=int, default=3, help="passes over the corpus in the throughput runs")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=320_000)
    p.add_argument("--max-sample-size", type=int, default=80_000)
    p.add_argument("--shard-size", type=int, default=20_000_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--skip", type=int, default=3, help="first updates left out of the data wait (startup)")
    args = p.parse_args()
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=args.work) as work:
        tmp, work = Path(tmp), Path(work)  # runs (logs) stay local; corpus and shards go to --work
        data = args.data or work / "corpus"
        if args.data is None:
            write_corpus(data, args.per_lang, file_format=args.file_format)
        t0 = time.perf_counter()
        report = write_shards(data, work / "shards", shard_size=args.shard_size, show_progress=False)
        shards = report.index.shards
        print(f"corpus and shards in {work}; sharded in {time.perf_counter() - t0:.1f} s: {len(shards)} shards, "
              f"{sum(s.bytes for s in shards) / 1e6:.1f} MB")
        throughput(args, data, work / "shards")
        data_wait(args, data, work / "shards", tmp)


if __name__ == "__main__":
    main()
