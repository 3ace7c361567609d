"""Fine-tuning's label passes over a large manifest: per-utterance objects (the old path) vs the index's columns.

Before its first update, fine-tuning reads every training label three times: to build the vocabulary, to count
symbols outside it, and to drop what CTC cannot learn (an empty label, or one needing more frames than the
audio gives). The old path made an `Utterance` per row for each pass and called the model's `num_frames` once
per utterance; the new one reads the label column in bulk and calls `num_frames` once per distinct length. Both
run here on the same synthetic manifest (its index built first, not timed), their outputs compared, wall and CPU
time printed with the ratio.

    python benchmarks/finetune_filter.py --utts 200000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from xlsr.data.index_cache import open_manifest
from xlsr.model import Wav2Vec2Config
from xlsr.text.labels import build_vocabulary, ctc_min_frames, label_of, labels_of, learnable
from xlsr.text.vocab import Vocabulary

PHONES = "a b c d e f g h i j k l m n o p".split()


def write_manifest(path: Path, n: int, seed: int = 0) -> None:
    """`n` lines, 0.5-4 s, 1-60 phones each (some labels empty)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8_000, 64_000, n)
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 50_000):
            lines = []
            for i in range(start, min(n, start + 50_000)):
                phones = " ".join(rng.choice(PHONES, int(rng.integers(0, 60))))
                lines.append(f'{{"id": "u{i:08d}", "audio": "a/u{i}.flac", "num_samples": {lengths[i]}, '
                             f'"lang": "xx", "phones": "{phones}"}}\n')
            f.write("".join(lines))


def old_passes(utts, num_frames) -> tuple:
    """The three passes as they were: an Utterance per row per pass, num_frames per utterance."""
    vocab = Vocabulary.build([label_of(u, "phones") for u in utts if label_of(u, "phones")], kind="phones")
    oov = vocab.oov_report([label_of(u, "phones") for u in utts if label_of(u, "phones")])
    keep = []
    for u in utts:
        text = label_of(u, "phones")
        ids = vocab.encode(text) if text else []
        keep.append(bool(ids) and ctc_min_frames(ids) <= num_frames(u.num_samples))
    return vocab.tokens, oov, keep


def new_passes(utts, num_frames) -> tuple:
    vocab = build_vocabulary({"m": utts}, "phones")
    oov = vocab.oov_report([text for text in labels_of(utts, "phones") if text])
    keep, _ = learnable(utts, vocab, "phones", num_frames)
    return vocab.tokens, oov, keep.tolist()


def timed(fn, *args) -> tuple:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=200_000)
    args = p.parse_args()
    num_frames = Wav2Vec2Config.preset("base").num_frames
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        write_manifest(path, args.utts)
        utts = open_manifest(path)
        old, old_wall, old_cpu = timed(old_passes, utts, num_frames)
        new, new_wall, new_cpu = timed(new_passes, utts, num_frames)
    assert old == new, "the two paths disagree"
    print(f"{args.utts:,} utterances: vocabulary, OOV count and CTC filter ({sum(new[2]):,} kept)")
    print(f"{'':<12}{'old':>9}{'new':>9}{'old/new':>9}")
    print(f"{'wall s':<12}{old_wall:>9.2f}{new_wall:>9.2f}{old_wall / new_wall:>8.1f}x")
    print(f"{'CPU s':<12}{old_cpu:>9.2f}{new_cpu:>9.2f}{old_cpu / new_cpu:>8.1f}x")


if __name__ == "__main__":
    main()
