"""Where the CPU time of reading shards goes, stage by stage, next to the file path, in one process.

`shard_throughput.py` compares the two loaders end to end with DataLoader workers; this script takes the
pieces apart in the main process (no workers, so no prefetch or IPC), CPU time per utterance, best of
--repeats, on the same synthesized corpus (FLAC files and their shards):

- files: `load_audio` of each file, and `pretrain_loader` over the manifests (load + crop + stack);
- shards: `read_shard` (webdataset's tar parse + our sha256 of the bytes + the JSON) on a first read and on a
  re-read of the unchanged file, `decode_audio` of the FLAC members, `ConsumerStream.items` (+ α draw and
  shuffle buffer) and `ConsumerStream.batches` (+ packing, decoding, cropping), and `shard_pretrain_loader`.

    python benchmarks/shard_profile.py --per-lang 200 [--profile 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from shard_throughput import write_corpus

from xlsr.data import shard_reader
from xlsr.data.audio import decode_audio, load_audio
from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import read_split
from xlsr.data.shard_index import read_index
from xlsr.data.shard_loader import shard_pretrain_loader
from xlsr.data.shard_reader import ShardSample, read_shard
from xlsr.data.shard_stream import ConsumerStream, StreamSpec
from xlsr.data.shards import write_shards

LOADER = dict(max_tokens=320_000, min_sample_size=16000, max_sample_size=80_000)


def best_cpu(fn, repeats: int, before=None) -> float:
    """Least CPU seconds of `repeats` calls of fn (each after `before`, untimed)."""
    best = float("inf")
    for _ in range(repeats):
        if before:
            before()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def first(iterable, n: int, count=lambda x: 1) -> None:
    """Take from `iterable` until `count` has added up to n."""
    got = 0
    for x in iterable:
        got += count(x)
        if got >= n:
            return


def through(make_loader, n: int) -> None:
    """Batches of a fresh loader, across epochs, until n utterances came out."""
    loader, got = make_loader(), 0
    while got < n:
        for batch in loader:
            got += batch.waveforms.shape[0]
            if got >= n:
                return
        loader.set_epoch(loader.epoch + 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-lang", type=int, default=200, help="synthesized utterances per language")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", type=int, default=0, help="also print cProfile's top N of the shard loader")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "corpus", Path(tmp) / "shards"
        write_corpus(data, args.per_lang, file_format="flac")
        write_shards(data, out, shard_size=20_000_000, show_progress=False)
        utts = read_split(data, "train")
        index = read_index(out)
        shards = tuple(index.of_split("train"))
        samples = [x for s in shards for x in read_shard(index.root, s) if isinstance(x, ShardSample)]
        spec = StreamSpec(index.root, shards, **LOADER, shuffle_buffer=256)
        n, r = len(utts), args.repeats

        def read_all():
            for s in shards:
                for _ in read_shard(index.root, s):
                    pass

        stages = [
            ("files: load_audio", best_cpu(lambda: [load_audio(u.audio) for u in utts], r)),
            ("files: pretrain_loader", best_cpu(lambda: through(lambda: pretrain_loader(utts, **LOADER), n), r)),
            ("shards: read_shard, first read",  # each read hashes (the code before 2026-12-04 has no cache)
             best_cpu(read_all, r, before=getattr(shard_reader, "_verified", {}).clear)),
            ("shards: read_shard, re-read", best_cpu(read_all, r)),
            ("shards: decode_audio", best_cpu(lambda: [decode_audio(x.flac, x.key) for x in samples], r)),
            ("shards: stream items", best_cpu(lambda: first(ConsumerStream(spec, 0, 1).items(), n), r)),
            ("shards: stream batches", best_cpu(lambda: first(
                ConsumerStream(spec, 0, 1).batches(), n,
                lambda x: 0 if x.batch is None else x.batch.waveforms.shape[0]), r)),
            ("shards: shard_pretrain_loader", best_cpu(
                lambda: through(lambda: shard_pretrain_loader(out, **LOADER, shuffle_buffer=256), n), r)),
        ]
        print(f"{n} utterances (FLAC, 1-5 s), one process, CPU µs per utterance, best of {r}:")
        for name, seconds in stages:
            print(f"{name:<34}{seconds / n * 1e6:>9.1f}")
        files, shards_ = stages[1][1], stages[-1][1]
        print(f"files / shards loader CPU (shards' relative throughput in one process): {files / shards_:.2f}x")
        if args.profile:
            profile = cProfile.Profile(time.process_time)
            profile.runcall(through, lambda: shard_pretrain_loader(out, **LOADER, shuffle_buffer=256), n)
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
